"""Real images as data: a folder of image files or an .npz of NHWC arrays, in the canonical form.

Every command that compares with real data (`--images PATH`: DGN-AM and PPGN code bounds from E(x),
the "real mean" comparison, inverse-set reference ranges, training an h-DAE) reads it here. The
canonical image is NHWC, RGB (or one gray channel), values in [0, 1]
(`jaxprobe.models.pixels`); a network's own convention is applied by its model afterwards.

- A folder: every file Pillow opens (PNG, JPEG, BMP, ...), in name order, converted to RGB or L,
  resized so the shorter side is the target's larger side, then centre-cropped to (H, W), as
  ImageNet evaluations do. Files that are not images are skipped and counted.
- An .npz: the one array in it (or the array named `images`), NHWC, uint8 in [0, 255] or floating
  in [0, 1]; read without pickle (`allow_pickle=False`).
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxprobe.errors import JaxprobeError

MAX_IMAGES = 100_000            # images read at most from one --images
MAX_BYTES = 8 * 2**30           # the canonical float32 array at most (8 GiB)
MAX_FILE_BYTES = 256 * 2**20    # one image file at most
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class RealImages(NamedTuple):
    """Images read from `source`: (m, H, W, C) float32 in [0, 1]; `skipped` files that were not images."""

    images: np.ndarray
    source: str
    skipped: int


def _check_shape(shape) -> tuple:
    shape = tuple(int(d) for d in shape)
    if len(shape) != 3 or shape[2] not in (1, 3) or min(shape[:2]) < 1 or max(shape[:2]) > 8192:
        raise JaxprobeError(f"images: expected a target shape (H, W, 1 or 3) with 1 <= H, W <= 8192, got {shape}")
    return shape


def _regular(path: Path, what: str) -> os.stat_result:
    try:
        st = path.stat()
    except OSError as e:
        raise JaxprobeError(f"images: cannot read {what} {str(path)!r} ({e.strerror or e})") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise JaxprobeError(f"images: expected a folder of image files or an .npz file, got a special file {str(path)!r}")
    return st


def _from_npz(path: Path, shape, limit: int) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            name = "images" if "images" in names else (names[0] if len(names) == 1 else None)
            if name is None:
                raise JaxprobeError(f"images: expected one array (or one named 'images') in {str(path)!r}, "
                                    f"got {len(names)}: {', '.join(names[:5])}")
            x = z[name]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise JaxprobeError(f"images: {str(path)!r} is not a readable .npz of NHWC arrays ({e})") from None
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise JaxprobeError(f"images: expected NHWC images with 1 or 3 channels in {str(path)!r}, got shape {x.shape}")
    if x.dtype == np.uint8:
        x = x[:limit].astype(np.float32) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        x = x[:limit].astype(np.float32)
        if not np.all(np.isfinite(x)) or x.min(initial=0) < 0 or x.max(initial=0) > 1:
            raise JaxprobeError(f"images: expected floating images in [0, 1] in {str(path)!r} (uint8 for 0-255)")
    else:
        raise JaxprobeError(f"images: expected uint8 or floating images in {str(path)!r}, got {x.dtype}")
    if shape is not None and x.shape[1:3] != shape[:2]:
        x = np.stack([_fit(im, shape) for im in x])
    return _channels(x, None if shape is None else shape[2])


def _channels(x: np.ndarray, c: int | None) -> np.ndarray:
    if c is None or x.shape[-1] == c:
        return x
    if c == 3:
        return np.repeat(x, 3, axis=-1)
    return (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]  # ITU-R 601 luma, as Pillow's "L"


def _fit(image: np.ndarray, shape) -> np.ndarray:
    """One (h, w, c) image in [0, 1], resized (shorter side to max(H, W)) and centre-cropped to (H, W)."""
    from PIL import Image

    h, w = shape[:2]
    mode = "L" if image.shape[-1] == 1 else "RGB"
    pil = Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8).squeeze(-1) if mode == "L"
                          else np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), mode)
    return _resize_crop(pil, h, w)


def _resize_crop(pil, h: int, w: int) -> np.ndarray:
    from PIL import Image

    side = max(h, w)
    r = side / min(pil.size)
    size = (max(w, round(pil.size[0] * r)), max(h, round(pil.size[1] * r)))
    pil = pil.resize(size, Image.Resampling.BILINEAR)
    left, top = (size[0] - w) // 2, (size[1] - h) // 2
    a = np.asarray(pil.crop((left, top, left + w, top + h)), np.float32) / 255.0
    return a[..., None] if a.ndim == 2 else a


def _from_folder(path: Path, shape, limit: int) -> tuple[np.ndarray, int]:
    from PIL import Image, UnidentifiedImageError

    if shape is None:
        raise JaxprobeError("images: a folder of image files needs the network's input shape to resize to")
    h, w, c = shape
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    out, skipped = [], 0
    for p in files:
        if len(out) >= limit:
            break
        try:
            st = p.stat()
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
                skipped += 1
                continue
            with Image.open(p) as im:
                if im.width * im.height > 2**27:  # Pillow's own bomb limit is a warning first
                    skipped += 1
                    continue
                out.append(_resize_crop(im.convert("L" if c == 1 else "RGB"), h, w))
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
            skipped += 1
    if not out:
        raise JaxprobeError(f"images: found no readable image files ({', '.join(IMAGE_SUFFIXES[:4])}, ...) in "
                            f"{str(path)!r}")
    return np.stack(out).astype(np.float32), skipped


def load_images(path, shape=None, *, limit: int = MAX_IMAGES) -> RealImages:
    """Real images from `path` (a folder of image files or an .npz), as (m, H, W, C) float32 in [0, 1].

    Args:
      path: a folder (images in name order) or an .npz file (see the module docstring).
      shape: (H, W, C) to resize, crop and convert to (required for a folder); None keeps an
        .npz's own size and channels.
      limit: read at most this many images.
    """
    if isinstance(path, str) and "\x00" in path:
        raise JaxprobeError("images: expected a path, got one with a NUL byte")
    shape = None if shape is None else _check_shape(shape)
    limit = int(limit)
    if not 1 <= limit <= MAX_IMAGES:
        raise JaxprobeError(f"images: expected a limit in [1, {MAX_IMAGES}], got {limit}")
    if shape is not None and limit * int(np.prod(shape, dtype=np.int64)) * 4 > MAX_BYTES:
        limit = max(1, MAX_BYTES // (int(np.prod(shape, dtype=np.int64)) * 4))
    p = Path(path)
    st = _regular(p, "path")
    if stat.S_ISDIR(st.st_mode):
        images, skipped = _from_folder(p, shape, limit)
    elif p.suffix.lower() == ".npz":
        images, skipped = _from_npz(p, shape, limit), 0
    else:
        raise JaxprobeError(f"images: expected a folder of image files or an .npz file, got {str(p)!r}")
    if len(images) == 0:
        raise JaxprobeError(f"images: {str(p)!r} holds no images")
    return RealImages(images, str(p), skipped)


__all__ = ["RealImages", "load_images", "MAX_IMAGES"]
