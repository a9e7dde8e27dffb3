"""Reproduction of the inverse-set paper's numbers (Hada & Carreira-Perpiñán 2019) on the default models.

For one logit neuron with K = 10 and n = 500 on fc_generator + classifier: the seeds' outer
iterations, the sampling steps for the other 490 (the paper needed about 85; 49 is the minimum),
and the mean pairwise E-distance for eq. 5, eq. 13 and eq. 14 from a shared initialization
(`jaxprobe.experiments.inverse_set_repro.reproduce_inverse_set`). The same run as
`jaxprobe reproduce inverse-set`, with the same flags; writes OUT/reproduce_inverse_set.{json,md},
replacing OUT whole when jaxprobe wrote it (or with --force).

    python benchmarks/reproduce_inverse_set.py --out benchmarks/results/inverse_set [--force] [--seed 0]
        [--generator DIR] [--classifier DIR] [--neuron logits:3] [--range Z1 Z2] [--n 500] [--k 10]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxprobe.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["reproduce", "inverse-set", *sys.argv[1:]]))
