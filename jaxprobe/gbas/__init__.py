"""E-GBAS (Jeon et al., "Efficient Generative Boundary-Aware Sampling", AAAI 2020), whole.

`boundaries` (halfspaces and regions of a layer), `beropt` (Algorithm 1: the smallest supporting
boundary set), `gbrrt` (Algorithm 2: the tree that explores the region), `epsball` (the L2 / Linf
baselines), `egbas` (Algorithm 3, the pipeline) and `metrics` (Tables 1-2: sigma and critic
feature similarity). Knows models only through the probe protocol.
"""
