"""The probe protocol: a model handle whose pure functions split a network at any layer l.

`Model.up_to(params, x, l)` is f_{l:1}(x), ending at layer l's pre-activation; `Model.from_(params,
h, l)` is the rest, starting with layer l's nonlinearity (docs/probe-protocol.md). Both are pure functions
of (params, input), jit-able with `l` static, and `from_(up_to(x, l), l) == forward(x)` up to
float32 rounding for every l. Samplers see models only through this protocol.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxprobe.checks import check_batch
from jaxprobe.errors import JaxprobeError
from jaxprobe.models.layers import Network
from jaxprobe.models.pixels import PixelConvention


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """A probe-able network: structure (`graphdef`), weights (`params`) and its conventions.

    Attributes:
      name: the model's name (a shipped name or the directory it was loaded from).
      graphdef: the NNX graph definition; `nnx.merge(graphdef, params)` rebuilds the module.
      params: every variable of the network (an `nnx.State` pytree), the first argument of the
        pure functions below.
      input_shape: one example's shape, batch axis excluded.
      role: "generator", "classifier" or "critic".
      pixels: the pixel convention of the output (generator) or of the input (classifier, critic).
      manifest: the manifest it was loaded from (architecture, training, quality figures).
    """

    name: str
    graphdef: Any
    params: Any
    layer_names: tuple
    input_shape: tuple
    role: str
    pixels: PixelConvention | None = None
    manifest: dict = dataclasses.field(default_factory=dict)
    _shapes: dict = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_module(cls, name: str, module: Network, input_shape, role: str, pixels=None, manifest=None):
        """A `Model` of an nnx `Network` built in code: its graph and parameters split apart."""
        graphdef, params = nnx.split(module)
        return cls(name, graphdef, params, tuple(module.names), tuple(input_shape), role, pixels,
                   dict(manifest or {}))

    # ------------------------------------------------------------- structure

    @property
    def n_layers(self) -> int:
        return len(self.layer_names)

    def layer(self, l) -> int:
        """Resolve a layer given by name or by number 1..L to its number; raise otherwise."""
        names = self.layer_names
        if isinstance(l, str):
            if l in names:
                return names.index(l) + 1
            if l.isdigit():
                return self.layer(int(l))
            raise JaxprobeError(f"layer: {self.name!r} has no layer {l!r}; its layers are {', '.join(names)}")
        if isinstance(l, bool) or not isinstance(l, (int,)) and not hasattr(l, "__index__"):
            raise JaxprobeError(f"layer: expected a layer name or a number 1..{len(names)}, got {l!r}")
        l = int(l)
        if not 1 <= l <= len(names):
            raise JaxprobeError(f"layer: expected 1..{len(names)} for {self.name!r}, got {l}")
        return l

    def layer_shapes(self) -> dict:
        """Pre-activation shape (one example) of every layer, by name, computed shape-only."""
        return {name: self.layer_shape(i + 1) for i, name in enumerate(self.layer_names)}

    def layer_shape(self, l) -> tuple:
        """Layer l's pre-activation shape for one example (cached; computed with eval_shape)."""
        l = self.layer(l)
        if l not in self._shapes:
            x = jax.ShapeDtypeStruct((1,) + self.input_shape, jnp.float32)
            self._shapes[l] = tuple(jax.eval_shape(lambda p, x: self.up_to(p, x, l), self.params, x).shape[1:])
        return self._shapes[l]

    def layer_output_shape(self, l) -> tuple:
        """Layer l's output shape for one example: after its nonlinearity and the parameter-free
        operations that follow it (pooling, reshapes), i.e. what the next learned map reads."""
        l = self.layer(l)
        if ("out", l) not in self._shapes:
            x = jax.ShapeDtypeStruct((1,) + self.input_shape, jnp.float32)

            def out(p, x):
                return nnx.merge(self.graphdef, p).layers[l - 1].post(self.up_to(p, x, l))

            self._shapes[("out", l)] = tuple(jax.eval_shape(out, self.params, x).shape[1:])
        return self._shapes[("out", l)]

    def output_shape(self) -> tuple:
        """The shape of one output of `forward` (no batch axis), by `jax.eval_shape`."""
        x = jax.ShapeDtypeStruct((1,) + self.input_shape, jnp.float32)
        return tuple(jax.eval_shape(self.forward, self.params, x).shape[1:])

    def param_counts(self) -> dict:
        """Number of learned parameters of each layer, by name."""
        counts = {}
        for i, name in enumerate(self.layer_names):
            sub = self.params["layers"][i]
            counts[name] = int(sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.filter_state(sub, nnx.Param))))
        return counts

    # ------------------------------------------------------------- pure functions

    def forward(self, params, x):
        """The full network: (batch, *input_shape) -> (batch, *output)."""
        check_batch("x", x, self.input_shape, what=f"model {self.name!r}")
        return nnx.merge(self.graphdef, params)(x)

    def up_to(self, params, x, l):
        """Layer l's pre-activation f_{l:1}(x), shape (batch, *layer_shape(l))."""
        l = self.layer(l)
        check_batch("x", x, self.input_shape, what=f"model {self.name!r}")
        return nnx.merge(self.graphdef, params).up_to(x, l)

    def from_(self, params, h, l):
        """The network from layer l's pre-activation h (its nonlinearity onward) to the output."""
        l = self.layer(l)
        check_batch("h", h, self.layer_shape(l), what=f"layer {self.layer_names[l - 1]!r} of {self.name!r}")
        return nnx.merge(self.graphdef, params).from_(h, l)

    def activation(self, params, x, l, *, nonlinear: bool = True):
        """Layer l's value for input x: after its nonlinearity (default, what Caffe reports) or before."""
        l = self.layer(l)
        h = self.up_to(params, x, l)
        return nnx.merge(self.graphdef, params).act(h, l) if nonlinear else h

    def sample_prior(self, key, n: int):
        """n codes from a generator's latent prior (manifest `latent.prior`: normal or uniform)."""
        latent = self.manifest.get("latent")
        if self.role != "generator" or not latent:
            raise JaxprobeError(f"model: {self.name!r} is not a generator with a latent prior")
        shape = (n,) + self.input_shape
        if latent.get("prior", "normal") == "uniform":
            return jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
        return jax.random.normal(key, shape)

    def replace(self, **changes) -> "Model":
        """A copy with `changes` (name, params, ...); its cached layer shapes are dropped."""
        return dataclasses.replace(self, _shapes={}, **changes)
