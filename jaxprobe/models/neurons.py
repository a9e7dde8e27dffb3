"""Neuron addresses: `layer:unit` or `layer:unit@y,x`, and reading their values (docs/probe-protocol.md, "Neuron addresses").

A neuron is one unit of one layer of a probe-able model. `layer` is a layer name or its number
1..L; `unit` counts from 0 (the papers' MatConvNet numbers count from 1: the inverse-set paper's
volcano neuron 981 is `fc8:980` here). A unit of a convolutional layer (pre-activation shape
(H, W, C)) is read at position (y, x) when one is given, else at the spatial centre
(H // 2, W // 2), as the DGN-AM and PPGN scripts do for conv5. Its value is read **after** the
layer's nonlinearity by default (what Caffe reports: its ReLUs run in place), or before it
(`nonlinear=False`). "After the nonlinearity" means the activation function alone, before any
pooling that follows it in the same layer, so positions index the layer's own grid.

Examples:
  >>> parse_neuron("logits:3")
  Neuron(text='logits:3', layer='logits', unit=3, position=None)
  >>> parse_neuron("conv2:5@3,4").position
  (3, 4)
"""

from __future__ import annotations

import re
from typing import NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np

from jaxprobe.errors import JaxprobeError
from jaxprobe.models.probe import Model

_PATTERN = re.compile(r"^([^:@\s]+):(\d+)(?:@(\d+),(\d+))?$")


class Neuron(NamedTuple):
    """One neuron address.

    Attributes:
      text: the address as the user wrote it (used in every message about this neuron).
      layer: the layer as written (a name or digits) after `parse_neuron`; its number 1..L after
        `resolve_neuron`.
      unit: the unit (channel for convolutional layers), counted from 0.
      position: (y, x) on a convolutional layer's grid, or None (a fully connected layer, or a
        convolutional unit whose position `resolve_neuron` fills with the centre).
    """

    text: str
    layer: str | int
    unit: int
    position: tuple | None = None


def parse_neuron(text: str) -> Neuron:
    """Parse `layer:unit` or `layer:unit@y,x` (spaces around the parts are ignored)."""
    if isinstance(text, Neuron):
        return text
    if not isinstance(text, str):
        raise JaxprobeError(f"neuron: expected a string 'layer:unit' or 'layer:unit@y,x', got {text!r}")
    m = _PATTERN.match(re.sub(r"\s+", "", text))
    if m is None:
        raise JaxprobeError(
            f"neuron {text!r}: expected 'layer:unit' or 'layer:unit@y,x' with a layer name or number "
            "and non-negative integer unit and position (units count from 0)"
        )
    layer, unit, y, x = m.groups()
    position = None if y is None else (int(y), int(x))
    return Neuron(text, layer, int(unit), position)


def resolve_neuron(model: Model, neuron) -> Neuron:
    """Check a neuron against `model` and return it with its layer number and full position.

    Raises JaxprobeError naming the neuron for an unknown layer, a unit out of range, a position
    off the layer's grid, or a position on a fully connected layer.
    """
    n = parse_neuron(neuron)  # a Neuron passes through, so resolving twice is harmless
    try:
        layer = model.layer(n.layer)
    except JaxprobeError as err:
        raise JaxprobeError(f"neuron {n.text!r}: {err}") from None
    name = model.layer_names[layer - 1]
    shape = model.layer_shape(layer)
    units = shape[-1]
    if not 0 <= n.unit < units:
        raise JaxprobeError(
            f"neuron {n.text!r}: unit {n.unit} out of range for layer {name!r} of {model.name!r}, "
            f"which has units 0..{units - 1}"
        )
    if len(shape) == 1:
        if n.position is not None:
            raise JaxprobeError(
                f"neuron {n.text!r}: layer {name!r} is fully connected (shape {shape}); it takes no @y,x position"
            )
        return Neuron(n.text, layer, n.unit, None)
    if len(shape) != 3:
        raise JaxprobeError(f"neuron {n.text!r}: layer {name!r} has shape {shape}; expected (units,) or (H, W, units)")
    h, w = shape[0], shape[1]
    y, x = n.position if n.position is not None else (h // 2, w // 2)
    if not (0 <= y < h and 0 <= x < w):
        raise JaxprobeError(
            f"neuron {n.text!r}: position ({y}, {x}) is off layer {name!r}'s {h}x{w} grid "
            f"(y in 0..{h - 1}, x in 0..{w - 1})"
        )
    return Neuron(n.text, layer, n.unit, (int(y), int(x)))


def resolve_neurons(model: Model, neurons) -> tuple:
    """`resolve_neuron` for one address or a sequence of them; returns a tuple of `Neuron`s."""
    if isinstance(neurons, (str, Neuron)):
        neurons = [neurons]
    neurons = list(neurons)
    if not neurons:
        raise JaxprobeError("neurons: expected at least one neuron address 'layer:unit'")
    return tuple(resolve_neuron(model, n) for n in neurons)


def flat_index(model: Model, neuron: Neuron) -> int:
    """Index of a resolved neuron in its layer's pre-activation flattened per example (row-major)."""
    shape = model.layer_shape(neuron.layer)
    if neuron.position is None:
        return int(neuron.unit)
    y, x = neuron.position
    return int((y * shape[1] + x) * shape[2] + neuron.unit)


def values_at(model: Model, params, x, layers: Sequence[int], flat, *, nonlinear: bool = True):
    """Values of p neurons given as (layer numbers, flat indices): (batch, p).

    `layers` is static (a tuple of p layer numbers); `flat` may be traced (p,) integers, so a
    jitted caller can change which units it reads without recompiling. One `up_to` per distinct
    layer.
    """
    layers = tuple(int(l) for l in layers)
    flat = jnp.asarray(flat)
    cache = {}
    for l in sorted(set(layers)):
        h = model.activation(params, x, l, nonlinear=nonlinear)
        cache[l] = h.reshape(h.shape[0], -1)
    cols = [jnp.take(cache[l], flat[j], axis=1) for j, l in enumerate(layers)]
    return jnp.stack(cols, axis=1)


def neuron_values(model: Model, params, x, neurons, *, nonlinear: bool = True):
    """The values of `neurons` of `model` for inputs x: (batch, p), in the order given.

    Args:
      model: a probe-able model (usually a classifier).
      params: its parameters (`model.params` or a modified copy).
      x: inputs (batch, *model.input_shape) in the model's pixel convention.
      neurons: one address or a sequence of addresses (`str` or `Neuron`), see the module doc.
      nonlinear: read after each layer's nonlinearity (default, what Caffe reports) or before it
        (the pre-activation, the learned map's output with batch norm).

    Returns:
      (batch, p) float array; column j is neuron j. Each distinct layer costs one `up_to`.
    """
    resolved = resolve_neurons(model, neurons)
    flat = np.array([flat_index(model, n) for n in resolved], np.int32)
    return values_at(model, params, x, [n.layer for n in resolved], flat, nonlinear=nonlinear)


def neuron_name(model: Model, neuron: Neuron) -> str:
    """Canonical address of a resolved neuron: `name:unit` or `name:unit@y,x`."""
    name = model.layer_names[neuron.layer - 1]
    if neuron.position is None:
        return f"{name}:{neuron.unit}"
    return f"{name}:{neuron.unit}@{neuron.position[0]},{neuron.position[1]}"
