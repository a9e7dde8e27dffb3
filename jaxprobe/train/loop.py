"""A resumable, deterministic training driver shared by every trainer.

The training state is any pytree (parameters, optimizer states, a PRNG key). It is checkpointed
with orbax every `every` steps into `work_dir` (orbax writes each checkpoint to a temporary name
and renames it, so a killed run leaves the last complete one), and a restarted run resumes from
the latest. Batches are a pure function of (seed, step), so a resumed run sees the same data as
an uninterrupted one and the same seed gives the same parameters.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import jax
import numpy as np


class EpochSampler:
    """Mini-batch indices that depend only on (seed, step): a fresh permutation per epoch."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._epoch, self._perm = -1, None

    def indices(self, step: int) -> np.ndarray:
        """The example indices of batch `step`: epoch step // (n // batch_size), each epoch a fresh
        permutation drawn from the seed, so a resumed run sees the same batches."""
        per_epoch = self.n // self.batch_size
        epoch, i = divmod(step, per_epoch)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._perm[i * self.batch_size : (i + 1) * self.batch_size]


def run(state, step_fn: Callable, batch_fn: Callable, n_steps: int, work_dir, *, every: int = 500,
        desc: str = "train", progress: bool = True):
    """Drive `state, metrics = step_fn(state, batch_fn(step))` for steps [start, n_steps).

    Returns (state, history, wall_seconds) where history maps metric name -> list of
    (step, value) every `every // 10` steps, and wall_seconds counts every run that led to this
    state (a resumed run adds the time recorded with its checkpoint).
    """
    import orbax.checkpoint as ocp
    from tqdm.auto import tqdm

    import json

    from jaxprobe.io import write_text

    work_dir = Path(work_dir).resolve()
    elapsed_file = work_dir / "elapsed.json"
    leaves, treedef = jax.tree.flatten(state)
    options = ocp.CheckpointManagerOptions(max_to_keep=2, save_interval_steps=every)
    history: dict = {}
    t0 = time.perf_counter()
    with ocp.CheckpointManager(work_dir, options=options) as mngr:
        start = mngr.latest_step() or 0
        before = json.loads(elapsed_file.read_text()).get(str(start), 0.0) if start and elapsed_file.exists() else 0.0
        if start:
            abstract = [jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype) for x in leaves]
            restored = mngr.restore(start, args=ocp.args.StandardRestore(abstract))
            state = jax.tree.unflatten(treedef, restored)
        log_every = max(1, every // 10)
        bar = tqdm(range(start, n_steps), desc=desc, disable=not progress, initial=start, total=n_steps)
        for step in bar:
            state, metrics = step_fn(state, batch_fn(step))
            if (step + 1) % log_every == 0 or step + 1 == n_steps:
                m = {k: float(v) for k, v in metrics.items()}
                for k, v in m.items():
                    history.setdefault(k, []).append((step + 1, v))
                bar.set_postfix({k: f"{v:.4g}" for k, v in m.items()})
            if (step + 1) % every == 0 or step + 1 == n_steps:
                mngr.save(step + 1, args=ocp.args.StandardSave(jax.tree.leaves(state)), force=True)
                mngr.wait_until_finished()
                write_text(elapsed_file, json.dumps({str(step + 1): before + time.perf_counter() - t0}))
    return state, history, before + time.perf_counter() - t0
