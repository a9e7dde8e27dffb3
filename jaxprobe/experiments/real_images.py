"""`--images` for the experiments: `jaxprobe.real_images.load_images` (a folder of image files or an
.npz of NHWC arrays, as canonical [0, 1] images)."""

from jaxprobe.real_images import RealImages, load_images

__all__ = ["RealImages", "load_images"]
