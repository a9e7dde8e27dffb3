"""One kernel protocol and one driver for every sampler in jaxprobe.

The protocol (as blackjax's `SamplingAlgorithm` and optax's `GradientTransformation`): a method's
`build(...)` closes over its networks, settings and problem and returns a `Kernel` of two pure
functions,

    state = kernel.init(...)                      # a NamedTuple
    state, info = kernel.step(key, state)         # info: a NamedTuple (or any pytree)

`run(kernel, key, state, steps)` is the one loop every sampler uses: `lax.scan` (or
`lax.while_loop` with `until`), the step keys drawn from `key` by step number, what each step
records kept in fixed buffers (`save_every`, `trace`), progress ticks, chains by `vmap`, chains
split over a mesh. Every loop body is differentiated networks' convolutions rewritten to XLA CPU's
canonical kernel layout (`jaxprobe.models.convs.canonical_convs`: the fast path that XLA's own
pass gives only to a program's entry computation, never to a loop body).

`run` works in two ways:
- inside `jax.jit` (or any trace), it is a pure function of its arguments, as blackjax's drivers:
  jit the outermost function of your research code and build the kernel inside it;
- called on concrete values, it compiles the loop itself, once per distinct computation: the
  arrays the kernel closes over (parameters, data) become arguments of the compiled program (not
  constants folded into it: a paper-scale network would make a 400 MB program), the program is
  cached by its jaxpr, and with `chunk` the run proceeds in compiled chunks of that many steps,
  between which Python reports progress and can be interrupted.

Step t's key is `fold_in(key, t)` (with `vmap`, chain i's is `fold_in(fold_in(key, i), t)`), so a
run in chunks draws exactly what the run in one piece draws, and chain i draws the same whatever
the number of chains beside it.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.errors import JaxprobeError
from jaxprobe.models.convs import eval_jaxpr
from jaxprobe.sharding import constrain_batch, gather, replicate, shard_batch

PROGRESS_TICKS = 20  # progress calls per run (about; plus one at the end)


class Kernel(NamedTuple):
    """A sampler: `init(...) -> state` and the pure `step(key, state) -> (state, info)`.

    The networks, settings and problem are closed over when the kernel is built; `init` takes what
    varies per run (initial codes, a query). States and infos are NamedTuples of arrays.
    """

    init: Callable
    step: Callable


class RunResult(NamedTuple):
    """What `run` returns.

    Attributes:
      state: the last state.
      trace: what was recorded (`trace(state, info)`, by default the info) after every step t
        with t % save_every == 0, stacked on a leading axis of ceil(steps / save_every) rows
        (with `vmap`, the chains come second); rows past `saved` are zeros.
      steps: () int32, the steps taken (fewer than asked when `until` stopped the run).
      saved: () int32, the rows of `trace` written.
    """

    state: Any
    trace: Any
    steps: jax.Array
    saved: jax.Array


def _info(state, info):
    return info


def step_keys(key, t, chains: int | None):
    """The key of step t (int32 array), or (chains,) keys with chain i's `fold_in(fold_in(key, i), t)`."""
    if chains is None:
        return jax.random.fold_in(key, t)
    return jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(key, i), t))(jnp.arange(chains))


def rows(steps: int, save_every: int) -> int:
    """ceil(steps / save_every): the rows of a run's trace (t = 0, save_every, ... < steps)."""
    return -(-int(steps) // int(save_every))


class _Settings(NamedTuple):
    total: int          # the run's steps (the trace buffer and the progress total)
    save_every: int
    vmap: bool
    chains: int | None
    mesh: Any
    has_until: bool


def _chains(state, vmap: bool):
    if not vmap:
        return None
    sizes = {np.shape(x)[0] for x in jax.tree.leaves(state) if np.ndim(x)}
    if len(sizes) != 1:
        raise JaxprobeError(f"state: with vmap=True every array of the state needs the chains on its leading axis, "
                            f"got leading sizes {sorted(sizes)}")
    return sizes.pop()


def _is_traced(*trees) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(trees))


def run(kernel: Kernel, key, state, steps: int, *, save_every: int = 1, trace: Callable | None = _info,
        until: Callable | None = None, vmap: bool = False, progress: Callable | None = None,
        chunk: int | None = None, mesh=None) -> RunResult:
    """Run `kernel.step` from `state` for `steps` steps: the one loop of every jaxprobe sampler.

    Args:
      kernel: a `Kernel` (its `step(key, state) -> (state, info)` is what runs).
      key: PRNG key; step t uses `fold_in(key, t)` (see the module docstring).
      state: the initial state (`kernel.init(...)`); with `vmap`, chains on every array's leading axis.
      steps: the most steps to take (a static Python int >= 1).
      save_every: record `trace(state, info)` after steps t = 0, save_every, 2 save_every, ...
      trace: what to record of each step, (state after the step, info) -> pytree (default: the
        info); None records nothing (memory stays flat over long runs).
      until: None, or state -> bool: stop (lax.while_loop) as soon as it holds after a step
        (with `vmap`, of the whole batched state).
      vmap: run `step` over the chains of a batched state with `jax.vmap`.
      progress: None or progress(steps done, steps) called from the host about PROGRESS_TICKS
        times a run (`jax.debug.callback` inside one program; between chunks with `chunk`).
      chunk: on concrete values only, run in compiled chunks of this many steps (progress and
        Ctrl-C between them); None runs one program.
      mesh: a `jax.sharding.Mesh` with a "batch" axis: with `vmap` the chains are split over it,
        everything else replicated; a mesh may span processes (every process makes the same call
        and gets the whole result).

    Returns:
      `RunResult(state, trace, steps, saved)`.
    """
    steps = int(steps)
    save_every = int(save_every)
    if steps < 1:
        raise JaxprobeError(f"steps: expected an integer >= 1, got {steps}")
    if save_every < 1:
        raise JaxprobeError(f"save_every: expected an integer >= 1, got {save_every}")
    if chunk is not None and int(chunk) < 1:
        raise JaxprobeError(f"chunk: expected None or an integer >= 1, got {chunk}")
    s = _Settings(steps, save_every, bool(vmap), _chains(state, vmap), mesh, until is not None)
    trace_fn = trace

    if _is_traced(key, state):
        return _pure_run(kernel, key, state, s, trace_fn, until, progress)
    # Concrete: compile the loop once per computation, closed-over arrays as arguments.
    key = jnp.asarray(key)
    if mesh is not None:
        key = replicate(key, mesh)
        state = shard_batch(state, mesh) if vmap else replicate(state, mesh)
    loop = _compiled_loop(kernel.step, until, trace_fn, None if chunk is not None else progress, s, key, state)
    if loop is None:  # the kernel closes over values of an enclosing trace: stay inside it
        return _pure_run(kernel, key, state, s, trace_fn, until, progress)
    program, consts, buffers = loop
    if mesh is None:
        # Committed as the program's outputs come back, so that chunk 2 finds chunk 1's program.
        key, state, buffers, consts = jax.device_put((key, state, buffers, consts), jax.devices()[0])
    t = jnp.int32(0)
    size = steps if chunk is None else min(int(chunk), steps)
    run_chunk = program(size)  # every chunk, the last one too (its steps past `steps` are skipped)
    for a in range(0, steps, size):
        b = min(a + size, steps)
        state, buffers, t = run_chunk(consts, key, state, buffers, t)
        if chunk is not None:
            done = int(t)  # waits for the chunk: progress reports finished steps
            if progress is not None:
                progress(done, steps)
            if done < b:  # until held
                break
    return gather(RunResult(state, buffers, t, jnp.minimum(-(-t // save_every), rows(steps, save_every))))


def _pure_run(kernel, key, state, s, trace_fn, until, progress):
    chains = s.chains if s.vmap else None
    if chains is not None and s.mesh is not None:
        state = jax.tree.map(lambda x: constrain_batch(x, s.mesh) if jnp.ndim(x) else x, state)
    p = _prepare(kernel.step, until, trace_fn, s, key, state)
    stepper = lambda k, st: p.g_step(p.c_step, k, st)  # noqa: E731
    unt = None if until is None else (lambda st: p.g_until(p.c_until, st))
    trf = None if trace_fn is None else (lambda st, inf: p.g_trace(p.c_trace, st, inf))
    state, buffers, t = _loop(stepper, unt, trf, progress, s._replace(vmap=False, chains=chains), key,
                              state, p.buffers, jnp.int32(0), s.total)
    return RunResult(state, buffers, t, jnp.minimum(-(-t // s.save_every), rows(s.total, s.save_every)))


class _Prepared(NamedTuple):
    g_step: Callable
    c_step: list
    g_until: Callable | None
    c_until: list | None
    g_trace: Callable | None
    c_trace: list | None
    buffers: Any
    text: str


def _prepare(step, until, trace_fn, s: _Settings, key, state) -> _Prepared:
    """The step (vmapped over chains with `s.vmap`), `until` and `trace` as jaxprs with what they
    close over lifted out (`hoist`; the step is traced once, here), the empty trace buffers, and
    the text naming the computation."""
    chains = s.chains if s.vmap else None
    keys0 = step_keys(key, jnp.int32(0), chains)
    one = jax.vmap(step) if s.vmap else step
    g_step, c_step, text = hoist(one, keys0, state)
    parts = [text, repr(s._replace(mesh=None)), repr(s.mesh), repr(jax.tree.structure(state))]
    g_until = c_until = g_trace = c_trace = buffers = None
    if until is not None:
        g_until, c_until, u_text = hoist(until, state)
        parts.append(u_text)
    if trace_fn is not None:
        new_shape, info_shape = jax.eval_shape(lambda k, st: g_step(c_step, k, st), keys0, state)
        g_trace, c_trace, tr_text = hoist(trace_fn, new_shape, info_shape)
        parts.append(tr_text)
        rec = jax.eval_shape(lambda st, inf: g_trace(c_trace, st, inf), new_shape, info_shape)
        n = rows(s.total, s.save_every)
        buffers = jax.tree.map(lambda a: jnp.zeros((n,) + a.shape, a.dtype), rec)
    return _Prepared(g_step, c_step, g_until, c_until, g_trace, c_trace, buffers, "\n".join(parts))


# ---- compiled once per computation -------------------------------------------------------------

_CACHE: collections.OrderedDict = collections.OrderedDict()
_CACHE_SIZE = 64
_LOCK = threading.Lock()


def hoist(f, *args):
    """(g, consts): `f`'s jaxpr at `args` with the arrays it closes over lifted out, so that
    g(consts, *args) == f(*args) (pytrees in and out) and `consts` can be passed to a compiled
    program as arguments; plus the jaxpr's text, which names the computation."""
    flat, tree = jax.tree.flatten(args)
    closed, out_shape = jax.make_jaxpr(lambda *xs: f(*jax.tree.unflatten(tree, xs)), return_shape=True)(*flat)
    out_tree = jax.tree.structure(out_shape)
    jaxpr = closed.jaxpr

    def g(consts, *xs):
        outs = eval_jaxpr(jaxpr, consts, jax.tree.leaves(xs))
        return jax.tree.unflatten(out_tree, outs)

    return g, list(closed.consts), str(jaxpr)


def _cached(name: str, text: str, make):
    with _LOCK:
        fn = _CACHE.get((name, text))
        if fn is None:
            fn = make()
            _CACHE[(name, text)] = fn
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        else:
            _CACHE.move_to_end((name, text))
        return fn


def _compiled_loop(step, until, trace_fn, progress, s: _Settings, key, state):
    """(program(length), consts, empty trace buffers): `program(length)` runs `length` steps from
    (consts, key, state, buffers, t0) as one compiled program, cached by the jaxprs of the step,
    `until` and `trace`, the arrays they close over hoisted into `consts`. None when those arrays
    are tracers of an enclosing transformation (the caller then traces the loop in place)."""
    p = _prepare(step, until, trace_fn, s, key, state)
    consts = (p.c_step, p.c_until, p.c_trace)
    if _is_traced(consts):
        return None
    text = p.text + "\n" + ("" if progress is None else repr(id(progress)))
    inner = s._replace(vmap=False, chains=s.chains if s.vmap else None)

    def program(length: int):
        def make():
            def loop(consts, key, state, buffers, t0):
                c_s, c_u, c_t = consts
                unt = None if p.g_until is None else (lambda st: p.g_until(c_u, st))
                trf = None if p.g_trace is None else (lambda st, inf: p.g_trace(c_t, st, inf))
                return _loop(lambda k, st: p.g_step(c_s, k, st), unt, trf, progress, inner, key, state, buffers,
                             t0, length)
            return jax.jit(loop)
        return _cached("loop", text + "\n" + str(length), make)

    buffers = p.buffers
    if s.mesh is not None:
        consts = replicate(consts, s.mesh)
        buffers = None if buffers is None else replicate(buffers, s.mesh)
    return program, consts, buffers


def _loop(stepper, until, trace_fn, progress, s: _Settings, key, state, trace, t0, length):
    """Steps t0 .. t0 + length - 1 of `stepper(keys, state) -> (state, info)` (its chains, if any,
    already vmapped inside it: `s.chains` says how many keys a step takes), fewer when `until`
    holds: (state, trace, steps done). Traceable."""
    every_tick = max(1, -(-s.total // PROGRESS_TICKS))

    def one(carry):
        t, state, trace = carry
        keys = step_keys(key, t, s.chains)
        new, info = stepper(keys, state)
        if s.chains is not None and s.mesh is not None:
            new = jax.tree.map(lambda x: constrain_batch(x, s.mesh) if x.ndim else x, new)
        if trace is not None:
            due = t % s.save_every == 0
            row = t // s.save_every
            rec = trace_fn(new, info)
            trace = jax.tree.map(lambda b, v: b.at[row].set(jnp.where(due, v, b[row])), trace, rec)
        if progress is not None:
            done = t + 1
            tick = (done % every_tick == 0) | (done == s.total)
            jax.lax.cond(tick, lambda n: jax.debug.callback(progress, n, s.total), lambda n: None, done)
        return t + 1, new, trace

    if until is None:
        ragged = s.total % length != 0  # a run in chunks whose last chunk is shorter

        def body(carry, _):
            if ragged:
                return jax.lax.cond(carry[0] < s.total, one, lambda c: c, carry), None
            return one(carry), None
        (t, state, trace), _ = jax.lax.scan(body, (t0, state, trace), None, length=length)
        return state, trace, t

    t1 = jnp.minimum(t0 + length, s.total)

    def cond(carry):
        t, state, _ = carry
        return (t < t1) & ~jnp.asarray(until(state), bool)

    t, state, trace = jax.lax.while_loop(cond, one, (t0, state, trace))
    return state, trace, t


def call(f: Callable, *args, mesh=None):
    """f(*args) as one compiled program, cached by f's jaxpr, the arrays f closes over passed as
    arguments (see the module docstring); with `mesh`, every array replicated on it. For the
    one-off parts of a sampler (its `init`, the summary of its result) on concrete values."""
    if _is_traced(args):
        return f(*args)
    g, consts, text = hoist(f, *args)
    program = _cached("call", text + repr(jax.tree.structure(args)), lambda: jax.jit(g))
    if mesh is not None:
        consts, args = replicate((consts, args), mesh)
    return gather(program(consts, *args))


def _filtered(static, *arrays):
    fn, tree, leaves = static
    it = iter(arrays)
    args, kwargs = jax.tree.unflatten(tree, [next(it) if x is _ARRAY else x for x in leaves])
    return fn(*args, **kwargs)


class _ArrayLeaf:
    def __repr__(self):
        return "<array>"


_ARRAY = _ArrayLeaf()
_filtered_jit = jax.jit(_filtered, static_argnums=0)


_SKELETONS: dict = {}


def _skeleton(x):
    """A `Model` leaf as its structure alone: one parameter-less copy per distinct structure (name,
    graph, layers, shapes, conventions, manifest), so that a model loaded or built again with the
    same structure finds the same compiled program, and a program that read a model's parameters
    instead of taking them as arguments fails loudly instead of keeping the first model's."""
    from jaxprobe.models.probe import Model

    if not isinstance(x, Model):
        return x
    try:
        key = (x.name, x.graphdef, x.layer_names, x.input_shape, x.role, x.pixels,
               json.dumps(x.manifest, sort_keys=True, default=str))
        hash(key)
    except (TypeError, ValueError):
        return x
    with _LOCK:
        if key not in _SKELETONS:
            if len(_SKELETONS) > _CACHE_SIZE:
                _SKELETONS.clear()
            _SKELETONS[key] = dataclasses.replace(x, params=None)
        return _SKELETONS[key]


def compiled(fn: Callable, *args, **kwargs):
    """fn(*args, **kwargs) through `jax.jit`, the arrays among their leaves its arguments and every
    other leaf (models, layers, option values, progress callbacks) part of its cache key, compared as jit
    compares static arguments: a second call with the same models and settings dispatches the
    compiled program without tracing anything in Python.

    Why: `run` on concrete values traces the step again on every call to find its program
    (0.05-0.3 s on the shipped models, longer than a short run's work); a public sampler whose
    models and settings are known calls its pure composition through `compiled` instead. `fn` must
    be a module-level function (its identity is part of the key) that takes every array it uses
    as an argument: a model's own parameters passed explicitly, not read from the model inside
    (`fn` sees each `Model` without its parameters, one copy per structure: models built or
    loaded again with the same structure share the program). Falls back to calling `fn` directly
    when a non-array leaf cannot be hashed, and under an enclosing trace."""
    leaves, tree = jax.tree.flatten((args, kwargs))
    if _is_traced(leaves):
        return fn(*args, **kwargs)
    is_array = [isinstance(x, (jax.Array, np.ndarray)) for x in leaves]
    static = (fn, tree, tuple(_ARRAY if a else _skeleton(x) for a, x in zip(is_array, leaves)))
    try:
        hash(static)
    except TypeError:
        return fn(*args, **kwargs)
    return _filtered_jit(static, *[x for a, x in zip(is_array, leaves) if a])


__all__ = ["Kernel", "RunResult", "PROGRESS_TICKS", "call", "compiled", "hoist", "rows", "run", "step_keys"]
