"""Reproduction of the inverse-set paper's numbers (paper 003) on the default models.

For one logit neuron with K = 10 and n = 500 on fc_generator + classifier: the seeds' outer
iterations, the sampling steps for the other 490 (the paper needed about 85; 49 is the minimum),
and the mean pairwise E-distance for eq. 5, eq. 13 and eq. 14 from a shared initialization.
The same function as `jaxprobe reproduce inverse-set`; writes OUT/reproduce_inverse_set.{json,md}.

    python benchmarks/reproduce_inverse_set.py --out benchmarks/results/inverse_set [--seed 0]
        [--generator DIR] [--classifier DIR] [--neuron logits:3] [--range Z1 Z2] [--n 500] [--k 10]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxprobe.cli.inverse_set import run_reproduction  # noqa: E402
from jaxprobe.errors import JaxprobeError  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--generator", default="fc_generator")
    p.add_argument("--classifier", default="classifier")
    p.add_argument("--neuron", default="logits:3")
    p.add_argument("--range", nargs=2, type=float, default=None, metavar=("Z1", "Z2"))
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--k", type=int, default=10)
    args = p.parse_args(argv)
    try:
        run_reproduction(args.out, seed=args.seed, generator=args.generator, classifier=args.classifier,
                         neuron=args.neuron, value_range=tuple(args.range) if args.range else None, n=args.n, k=args.k)
    except JaxprobeError as e:
        print(f"reproduce_inverse_set: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
