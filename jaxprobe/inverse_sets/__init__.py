"""The inverse set of a neuron (Hada & Carreira-Perpinan, "Sampling the Inverse Set of a Neuron", 2019).

`auglag` (the augmented-Lagrangian solver with slacks that finds the K seeds) and `inverse_set`
(seeds, then the fast sampling of n codes whose neurons lie in their ranges; intersections of
several neurons). Knows models only through the probe protocol.
"""
