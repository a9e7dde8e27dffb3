"""DGN-AM: codes of the shipped fc_generator whose images maximize each logit of the shipped classifier.

Writes to OUT:
  dgn_am_images.png   one chain per logit 0..9: the image of the last code (top row) and of the
                      best code seen (bottom row), titled with the logit's value;
  dgn_am_history.png  each chain's objective over the iterations.

    python examples/dgn_am_digits.py --out examples-out/dgn_am [--steps 200] [--seed 0] [--smoke]

`--smoke` (or JAXPROBE_EXAMPLES_SMOKE=1) runs a few steps only, to check that the example works.
"""

from __future__ import annotations

import argparse
import sys
import os
from pathlib import Path

import jax
import numpy as np

import jaxprobe
from jaxprobe.io import atomic_dir
from jaxprobe.experiments.figures import pyplot, save_figure, save_grid


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="examples-out/dgn_am", help="directory for the figures")
    p.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")
    p.add_argument("--steps", type=int, default=200, help="iterations (the reference's 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", default=os.environ.get("JAXPROBE_EXAMPLES_SMOKE") == "1",
                   help="a few steps only (also JAXPROBE_EXAMPLES_SMOKE=1)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    with atomic_dir(args.out, force=args.force, name="--out") as out:
        g, f = jaxprobe.load("fc_generator"), jaxprobe.load("classifier")
        steps = 5 if args.smoke else args.steps
        neurons = [f"logits:{j}" for j in range(10)]
        # fc_generator's codes are the classifier's fc1 features, which a ReLU makes non-negative: clip
        # at 0 from below, as the reference clips fc6 codes. The step ramps from 1 (not the
        # reference's 8, tuned for 4096-wide fc6 codes) down to 1e-10.
        r = jaxprobe.dgn_am(jax.random.PRNGKey(args.seed), g, f, neurons, steps=steps, step_size=(1.0, 1e-10),
                            lower=0.0)

        best_images = g.forward(g.params, r.best_codes)
        images = np.concatenate([np.asarray(g.pixels.to_canonical(r.images)),
                                 np.asarray(g.pixels.to_canonical(best_images))])
        save_grid(out / "dgn_am_images.png", images, 10,
                  "DGN-AM, one chain per logit 0..9: " + ", ".join(f"{v:.1f}" for v in np.asarray(r.values)),
                  row_labels=["last", "best"])

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
        history = np.asarray(r.history)
        for j in range(history.shape[1]):
            ax.plot(np.arange(1, len(history) + 1), history[:, j], lw=1, label=str(j))
        ax.set_xlabel("iteration")
        ax.set_ylabel("logit of the chain's digit")
        ax.legend(fontsize=6, ncol=5, title="chain", title_fontsize=6)
        fig.tight_layout()
        save_figure(fig, out / "dgn_am_history.png")

        predicted = np.asarray(jaxprobe.neuron_values(
            f, f.params, jaxprobe.adapt_images(best_images, g.pixels, f.pixels, f.input_shape), neurons)).argmax(1)
        print("best logits: " + ", ".join(f"{n} {v:.2f}" for n, v in zip(r.neurons, np.asarray(r.best_values))))
        print(f"classifier's argmax on the best images: {predicted.tolist()} (chain j maximizes logit j)")
        print(f"wrote {Path(args.out) / 'dgn_am_images.png'} and {Path(args.out) / 'dgn_am_history.png'}")


if __name__ == "__main__":
    try:
        main()
    except jaxprobe.JaxprobeError as e:  # bad input: one line and status 2, as the command line gives
        print(f"{Path(__file__).name}: error: {e}", file=sys.stderr)
        sys.exit(2)
