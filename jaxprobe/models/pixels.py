"""Pixel conventions: how a generator's output or a classifier's input encodes an image.

The canonical image is NHWC, RGB (or one gray channel), values in [0, 1]. A convention maps it
linearly: value = ((canonical in channel order) * (high - low) + low - mean) * scale. One function,
`convert_pixels`, carries a generator's images into a classifier's input through that form
(docs/probe-protocol.md, "Pixel conventions": one function maps the first into the second).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from jaxprobe.errors import JaxprobeError


@dataclasses.dataclass(frozen=True)
class PixelConvention:
    """Value range, channel order, per-channel mean and scale of an image tensor."""

    low: float = 0.0
    high: float = 1.0
    channels: str = "gray"  # "gray", "RGB" or "BGR"
    mean: tuple = ()  # per channel, in this convention's channel order; () means zero
    scale: float = 1.0

    def __post_init__(self):
        if self.channels not in ("gray", "RGB", "BGR"):
            raise JaxprobeError(f"channels: expected 'gray', 'RGB' or 'BGR', got {self.channels!r}")
        if not self.high > self.low:
            raise JaxprobeError(f"high: expected high > low, got low={self.low}, high={self.high}")

    @property
    def n_channels(self) -> int:
        return 1 if self.channels == "gray" else 3

    def to_canonical(self, x):
        """Images in this convention to the canonical one: [0, 1], RGB (or gray), no mean."""
        x = x / self.scale
        if self.mean:
            x = x + jnp.asarray(self.mean, x.dtype)
        x = (x - self.low) / (self.high - self.low)
        return x[..., ::-1] if self.channels == "BGR" else x

    def from_canonical(self, x):
        """Canonical images ([0, 1], RGB or gray) to this convention: the inverse of `to_canonical`."""
        if self.channels == "BGR":
            x = x[..., ::-1]
        x = x * (self.high - self.low) + self.low
        if self.mean:
            x = x - jnp.asarray(self.mean, x.dtype)
        return x * self.scale

    def to_dict(self) -> dict:
        """The convention as a manifest's JSON object."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PixelConvention":
        """The convention a manifest's JSON object describes."""
        d = dict(d)
        d["mean"] = tuple(d.get("mean", ()))
        return cls(**d)


def convert_pixels(images, src: PixelConvention, dst: PixelConvention):
    """Map NHWC images from convention `src` to `dst` (values and channels; no resizing).

    Gray becomes RGB by repeating the channel; RGB becomes gray by the channel mean.
    """
    if images.shape[-1] != src.n_channels:
        raise JaxprobeError(
            f"images: expected {src.n_channels} channel(s) for {src.channels} pixels, got shape {images.shape}"
        )
    x = src.to_canonical(images)
    if src.n_channels == 1 and dst.n_channels == 3:
        x = jnp.repeat(x, 3, axis=-1)
    elif src.n_channels == 3 and dst.n_channels == 1:
        x = jnp.mean(x, axis=-1, keepdims=True)
    return dst.from_canonical(x)


def center_crop(images, size: int):
    """Crop the central size x size window of NHWC images (DeePSim 256 -> CaffeNet 227)."""
    h, w = images.shape[1], images.shape[2]
    if size > min(h, w):
        raise JaxprobeError(f"size: expected at most {min(h, w)} for images of shape {images.shape}, got {size}")
    top, left = (h - size) // 2, (w - size) // 2
    return images[:, top : top + size, left : left + size, :]


def adapt_images(images, src: PixelConvention | None, dst: PixelConvention | None, shape=None):
    """A generator's images as a classifier's input, as DGN-AM (Nguyen et al. 2016) feeds DeePSim's 256
    images to CaffeNet's 227: `convert_pixels`, then a centre crop to the classifier's side when the
    images are larger (DeePSim's 256 -> CaffeNet's 227).

    Args:
      images: (n, H, W, C) in convention `src`; either convention None leaves values unchanged.
      shape: the classifier's input shape (side, side, channels), e.g. `model.input_shape`, or
        None (or a non-image shape) for no crop.
    """
    if src is not None and dst is not None:
        images = convert_pixels(images, src, dst)
    if shape is not None and len(shape) == 3 and images.shape[1] != shape[0]:
        images = center_crop(images, int(shape[0]))
    return images


def image_bridge(generator, classifier) -> dict:
    """The rule that takes `generator`'s images to `classifier`'s input, as `adapt_images` applies
    it, written out for a result file: the two pixel conventions (or null where a model records
    none: values then pass unchanged), the channel change, and the centre crop (DeePSim's 256 to
    CaffeNet's 227 at offset 14). Raises one line when the sizes cannot be bridged (an output
    smaller than the input, not square where a crop is needed, or channels that differ with no
    convention to convert them)."""
    out = tuple(generator.output_shape())
    inp = tuple(classifier.input_shape)
    src, dst = generator.pixels, classifier.pixels
    names = f"{getattr(generator, 'name', 'generator')!r} to {getattr(classifier, 'name', 'classifier')!r}"
    if len(out) != 3 or len(inp) != 3:
        raise JaxprobeError(f"generator: its output {out} and the classifier's input {inp} must both be images "
                            f"(H, W, C) to bridge {names}")
    if (src is None or dst is None) and out[2] != inp[2]:
        raise JaxprobeError(f"generator: {out[2]} channel(s) out, {inp[2]} in, and no pixel convention recorded to "
                            f"convert them ({names}); convert the models with --channels")
    crop = None
    if out[:2] != inp[:2]:
        if out[0] != out[1] or inp[0] != inp[1] or out[0] < inp[0]:
            raise JaxprobeError(f"generator: images of {out[0]}x{out[1]} cannot be centre-cropped to the classifier's "
                                f"{inp[0]}x{inp[1]} ({names}); expected square images at least as large")
        top = (out[0] - inp[0]) // 2
        crop = {"from": [out[0], out[1]], "to": [inp[0], inp[1]], "offset": [top, top]}
    return {"generator_pixels": None if src is None else src.to_dict(),
            "classifier_pixels": None if dst is None else dst.to_dict(),
            "channels": None if src is None or dst is None or src.channels == dst.channels
            else f"{src.channels} -> {dst.channels}",
            "center_crop": crop}
