"""PPGN's numbers on the default models (Nguyen et al. 2017): class rates and PPGN against DGN-AM.

One set-up, the one docs/methods/ppgn.md quotes: fc_generator + classifier, the reference's
settings (eps 1e-5, 1, 1e-17, step 1, threshold 0), `CHAINS` chains per class of 200 steps (201
updates, as the reference's loop), a sample saved every 5 steps, burn-in 100, the code clipped to
[0, 3x each unit's maximum over 500 MNIST test digits] (`code_bounds(..., "real")`), under the
h-DAE prior and the encoder prior R(h) = E(G(h)). Per class: the kept rate, the class rate after
burn-in, and the diversity comparison of `jaxprobe.experiments.ppgn.diversity` (the chains' last
images against as many DGN-AM runs of 200 steps, mean pairwise distance in the classifier's
penultimate features, with the spread of the distances); over classes, the spread of both.
Writes OUT/ppgn_classes.json and OUT/ppgn_classes.md. `jaxprobe reproduce ppgn` runs the same
function (`ppgn_classes`) for one prior on any generator and classifier, and writes the same table.

    python benchmarks/reproduce_ppgn.py --out benchmarks/results/ppgn [--seed 0] [--chains 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SETUP = {"chains": 8, "steps": 200, "burn_in": 100, "save_every": 5, "bounds": "real"}


def table(runs: dict) -> str:
    """The markdown table docs/methods/ppgn.md quotes: one row per prior (`jaxprobe reproduce ppgn`'s
    own, `jaxprobe.experiments.ppgn.classes_table`)."""
    from jaxprobe.experiments.ppgn import classes_table

    return classes_table(runs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chains", type=int, default=SETUP["chains"])
    parser.add_argument("--classes", type=int, nargs="*", default=None)
    args = parser.parse_args(argv)

    import jax

    import jaxprobe
    from jaxprobe.experiments.ppgn import ppgn_classes
    from jaxprobe.io import jsonable

    g, c = jaxprobe.load("fc_generator"), jaxprobe.load("classifier")
    setup = dict(SETUP, chains=args.chains)
    runs = {}
    for prior in ("dae", "encoder"):
        t0 = time.perf_counter()
        run = ppgn_classes(jax.random.key(args.seed), g, c, prior, classes=args.classes, **setup)
        runs[prior] = {"classes": run["classes"], "min_class_rate": run["min_class_rate"],
                       "diversity": run["diversity"], "wall_s": round(time.perf_counter() - t0, 1)}
        print(prior, runs[prior]["min_class_rate"], run["diversity"], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"setup": dict(setup, generator="fc_generator", classifier="classifier", seed=args.seed,
                            eps=[1e-5, 1.0, 1e-17], step_size=1.0, threshold=0.0, dgn_am_steps=setup["steps"],
                            bounds_rule="[0, 3x each unit's maximum over 500 MNIST test digits]"),
              "runs": runs}
    (out / "ppgn_classes.json").write_text(json.dumps(jsonable(record), indent=1) + "\n")
    (out / "ppgn_classes.md").write_text(table(runs))
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
