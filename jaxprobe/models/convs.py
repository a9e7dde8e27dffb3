"""Loop bodies with their convolutions in XLA CPU's canonical kernel layout.

Why (measured on jaxlib 0.10.2, CPU). The gradient of a convolution with respect to its input is a
convolution whose kernel JAX's transpose rule hands over as `rev(w)` with its in/out dimensions
swapped (HLO `dim_labels=b01f_01oi->b01f`). XLA CPU's `ConvolutionCanonicalization` pass, which
transposes such a kernel to the `01io` layout its fast convolutions (YNNPACK / Eigen) need, visits
only the entry computation; inside a `lax.scan` / `lax.while_loop` body the swapped convolutions
stay as they are and run on the slow generic emitter. The seeds' inner step of the inverse set ran
2.6x slower under `lax.scan` than jitted alone (28.6 vs 10.9 ms) and the sampling step 2x slower
under `lax.while_loop`, for that reason alone. `canonical_convs(f)` re-traces `f` and writes every
convolution with the kernel transposed explicitly to (spatial..., in, out), which XLA leaves as a
cheap transpose of the weights and a canonical convolution, in a loop body or not, and does the same
inside the loops and branches nested in `f` (scan, while, cond bodies). Same values up to float32
rounding (the fast kernels sum in another order). `jaxprobe.driver.run` applies it to every
sampler's loop body.
"""

from __future__ import annotations

import jax
from jax import lax
from jax.extend import core as jcore

_CALLS = ("pjit", "jit", "closed_call", "core_call")


def _conv(lhs, rhs, *, dimension_numbers, **params):
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    n = len(rhs_spec)
    canon = (n - 1, n - 2) + tuple(range(n - 2))  # (out, in, spatial...) dims of (spatial..., in, out)
    if tuple(rhs_spec) != canon:
        rhs = lax.transpose(rhs, tuple(rhs_spec[2:]) + (rhs_spec[1], rhs_spec[0]))
        dimension_numbers = lax.ConvDimensionNumbers(lhs_spec, canon, out_spec)
    return lax.conv_general_dilated_p.bind(lhs, rhs, dimension_numbers=dimension_numbers, **params)


# The sub-computations of control-flow primitives, whose convolutions are rewritten too.
_BODIES = {"scan": ("jaxpr",), "while": ("cond_jaxpr", "body_jaxpr"), "cond": ("branches",)}


def _rewritten(closed):
    """A ClosedJaxpr with the same signature whose convolutions are rewritten by `_conv`."""
    if not any(e.primitive.name in ("conv_general_dilated",) + _CALLS + tuple(_BODIES) for e in closed.jaxpr.eqns):
        return closed
    avals = [jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=getattr(a, "weak_type", False))
             for a in closed.in_avals]
    new = jax.make_jaxpr(lambda *xs: eval_jaxpr(closed.jaxpr, closed.consts, xs))(*avals)
    if [(a.shape, a.dtype) for a in new.out_avals] != [(a.shape, a.dtype) for a in closed.out_avals]:
        return closed
    return new


def eval_jaxpr(jaxpr, consts, args):
    """Evaluate `jaxpr` like `jax.core.eval_jaxpr`, inlining nested jit calls (their convolutions
    too) and rewriting each convolution by `_conv`: the canonical-kernel form of the same function."""
    env = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr")) if name in _CALLS else None
        if inner is not None:
            outs = (eval_jaxpr(inner.jaxpr, inner.consts, invals) if hasattr(inner, "jaxpr")
                    else eval_jaxpr(inner, (), invals))
        elif name == "conv_general_dilated":
            outs = [_conv(*invals, **eqn.params)]
        else:
            params = dict(eqn.params)
            for field in _BODIES.get(name, ()):  # loops and branches nested in the step: rewrite theirs too
                params[field] = (tuple(map(_rewritten, params[field])) if isinstance(params[field], tuple)
                                 else _rewritten(params[field]))
            outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(params))
            if not eqn.primitive.multiple_results:
                outs = [outs]
        env.update(zip(eqn.outvars, outs))
    return [read(v) for v in jaxpr.outvars]


def canonical_convs(f):
    """`f` (pytrees in, pytree out) with every convolution it runs, its gradients' included, given
    its kernel in the canonical (spatial..., in, out) layout. Wrap the differentiated function (a
    gradient's convolutions exist only after differentiation), as the body of a loop."""

    def wrapped(*args):
        flat, tree = jax.tree.flatten(args)
        closed, out_shape = jax.make_jaxpr(lambda *xs: f(*jax.tree.unflatten(tree, xs)), return_shape=True)(*flat)
        outs = eval_jaxpr(closed.jaxpr, closed.consts, flat)
        return jax.tree.unflatten(jax.tree.structure(out_shape), outs)

    return wrapped
