"""Methods that search a generator's code space for what excites a neuron of a classifier.

`dgn_am` (Nguyen et al., "Synthesizing the preferred inputs for neurons in neural networks via
deep generator networks", NIPS 2016) and `ppgn` (Nguyen et al., "Plug & Play Generative Networks",
CVPR 2017: MALA-approx chains under a learned prior on codes). Knows models only through the probe protocol.
"""
