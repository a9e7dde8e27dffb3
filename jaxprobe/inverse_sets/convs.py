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
cheap transpose of the weights and a canonical convolution, in a loop body or not. Same values up to
float32 rounding (the fast kernels sum in another order).
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


def _eval(jaxpr, consts, args):
    """Evaluate `jaxpr` like `jax.core.eval_jaxpr`, inlining nested jit calls (their convolutions
    too) and rewriting each convolution by `_conv`."""
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
            outs = (_eval(inner.jaxpr, inner.consts, invals) if hasattr(inner, "jaxpr")
                    else _eval(inner, (), invals))
        elif name == "conv_general_dilated":
            outs = [_conv(*invals, **eqn.params)]
        else:
            outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
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
        outs = _eval(closed.jaxpr, closed.consts, flat)
        return jax.tree.unflatten(jax.tree.structure(out_shape), outs)

    return wrapped
