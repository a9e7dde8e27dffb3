"""The inverse set of a neuron (Hada & Carreira-Perpiñán, "Sampling the Inverse Set of a Neuron", 2019).

`auglag` (the augmented-Lagrangian solver with slacks, a kernel: one outer iteration per step),
`problem` (the networks, the constrained neurons and the objective's pure pieces), `seeds` (the
K seeds of eq. 7-8 and their initial codes), `sampling` (the sampler kernel of eq. 9-10),
`options` (`InverseSetOptions` and the checks), `summary` (`InverseSet`) and `inverse_set` (their
composition). Knows models only through the probe protocol.
"""
