"""The inverse set of a neuron: n images of the shipped fc_generator whose classifier logit lies in a range.

Writes to OUT:
  inverse_set_histogram.png  the neuron's value over the n samples, the range [z1, z2] shaded
                             (every sample lies inside it), beside its value over images of codes
                             drawn the way the seeds start (before any optimization);
  inverse_set_samples.png    the samples, sorted by the neuron's value.

    python examples/inverse_set_histogram.py --out examples-out/inverse_set [--neuron logits:3]
        [--range 4 6] [--n 200] [--k 10] [--diversity embedding] [--seed 0] [--smoke]

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
from jaxprobe.experiments.figures import save_histograms, save_sorted_samples


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="examples-out/inverse_set", help="directory for the figures")
    p.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")
    p.add_argument("--neuron", default="logits:3", help="classifier neuron layer:unit[@y,x] (default logits:3)")
    p.add_argument("--range", nargs=2, type=float, default=(4.0, 6.0), metavar=("Z1", "Z2"))
    p.add_argument("--n", type=int, default=200, help="samples wanted")
    p.add_argument("--k", type=int, default=10, help="codes optimized together")
    p.add_argument("--diversity", default="embedding", choices=("embedding", "code", "none"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", default=os.environ.get("JAXPROBE_EXAMPLES_SMOKE") == "1",
                   help="a few steps only (also JAXPROBE_EXAMPLES_SMOKE=1)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    with atomic_dir(args.out, force=args.force, name="--out") as out:
        g, f = jaxprobe.load("fc_generator"), jaxprobe.load("classifier")
        key = jax.random.PRNGKey(args.seed)
        budget = dict(n=args.k + 10, inner_steps=20, max_outer=3) if args.smoke else dict(n=args.n)

        s = jaxprobe.inverse_set(key, g, f, args.neuron, tuple(args.range), k=args.k, diversity=args.diversity,
                                 **budget)
        # For comparison, the neuron over G(E(x)) for uniform random images x: codes drawn the way the
        # seeds start (init "auto": fc_generator inverts the classifier's fc1, E here).
        x = jax.random.uniform(jax.random.fold_in(key, 1), (100 if args.smoke else 500,) + f.input_shape)
        codes = f.activation(f.params, f.pixels.from_canonical(x), "fc1")
        images = jaxprobe.adapt_images(g.forward(g.params, codes), g.pixels, f.pixels, f.input_shape)
        before = np.asarray(jaxprobe.neuron_values(f, f.params, images, args.neuron))[:, 0]

        z1, z2 = args.range
        canonical = np.asarray(g.pixels.to_canonical(s.images))
        save_histograms(out / "inverse_set_histogram.png",
                        [(f"{s.neurons[0]}, inverse set", s.activations[:, 0], (z1, z2)),
                         (f"{s.neurons[0]} over G(E(random images))", before, (z1, z2))],
                        f"fc_generator + classifier: {s.n_accepted} samples, {s.stop_reason}")
        save_sorted_samples(out / "inverse_set_samples.png",
                            [(f"{s.neurons[0]} in [{z1:g}, {z2:g}]", canonical, s.activations)],
                            f"inverse set of {s.neurons[0]} ({s.diversity} diversity)", shown=50)
        print(s.stop_message)
        print(f"seeds: {s.outer_iterations} outer iterations, {s.inner_steps} inner steps; "
              f"mean pairwise E-distance {s.stats['mean_pairwise_distance']:.2f}; "
              f"values {s.activations.min():.3f} .. {s.activations.max():.3f}" if s.n_accepted else "no samples")
        print(f"wrote {Path(args.out) / 'inverse_set_histogram.png'} and {Path(args.out) / 'inverse_set_samples.png'}")


if __name__ == "__main__":
    try:
        main()
    except jaxprobe.JaxprobeError as e:  # bad input: one line and status 2, as the command line gives
        print(f"{Path(__file__).name}: error: {e}", file=sys.stderr)
        sys.exit(2)
