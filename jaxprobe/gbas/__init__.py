"""E-GBAS (Jeon et al., "Efficient Generative Boundary-Aware Sampling", AAAI 2020), whole.

`boundaries` (halfspaces and regions of a layer), `beropt` (Algorithm 1: the smallest supporting
boundary set), `gbrrt` (Algorithm 2: the tree that explores the region; its checks in
`gbrrt_checks`), `epsball` (the L2 / Linf baselines), `egbas` (Algorithm 3, the pipeline) and
`metrics` (Tables 1-2: sigma and critic feature similarity); `options` replaces settings by name.
BerOpt and GB-RRT are kernels that `jaxprobe.driver` runs. Knows models only through the probe
protocol.
"""
