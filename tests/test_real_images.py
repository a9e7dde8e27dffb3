"""`--images`: a folder of image files (Pillow) or an .npz of NHWC arrays, as canonical [0, 1] images;
bad paths and files are one-line errors."""

import numpy as np
import pytest
from PIL import Image

from jaxprobe import JaxprobeError
from jaxprobe.real_images import load_images


def test_folder_images_are_resized_centre_cropped_and_scaled(tmp_path):
    # a 60 x 40 RGB image: left half red, right half blue; a 10 x 10 gray one; a text file to skip
    a = np.zeros((40, 60, 3), np.uint8)
    a[:, :30] = (255, 0, 0)
    a[:, 30:] = (0, 0, 255)
    a[:, :10] = (0, 255, 0)  # the outer sixth on the left: cropped away, not squeezed in
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(np.full((10, 10), 128, np.uint8), "L").save(tmp_path / "b.png")
    (tmp_path / "c.png").write_text("not an image")
    r = load_images(tmp_path, (20, 20, 3))
    assert r.images.shape == (2, 20, 20, 3) and r.images.dtype == np.float32 and r.skipped == 1
    # shorter side 40 -> 20: the 60-wide image becomes 30 wide, cropped to its middle 20 columns
    np.testing.assert_allclose(r.images[0, :, 1], np.tile([1, 0, 0], (20, 1)), atol=0.02)
    np.testing.assert_allclose(r.images[0, :, -2], np.tile([0, 0, 1], (20, 1)), atol=0.02)
    assert r.images[0, :, 1:, 1].max() < 0.05  # squeezed to 20 columns, columns 0-3 would be green
    np.testing.assert_allclose(r.images[1], 128 / 255, atol=0.01)  # gray to RGB: three equal channels
    gray = load_images(tmp_path, (8, 8, 1)).images
    assert gray.shape == (2, 8, 8, 1)
    np.testing.assert_allclose(gray[0, 4, 1, 0], 0.299, atol=0.02)  # Pillow's L of pure red


def test_npz_uint8_and_float_and_channels(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "u.npz", images=x)
    r = load_images(tmp_path / "u.npz")
    np.testing.assert_allclose(r.images, x / 255.0, rtol=1e-6)
    np.savez(tmp_path / "f.npz", x.astype(np.float32) / 255)
    g = load_images(tmp_path / "f.npz", (8, 8, 1)).images
    np.testing.assert_allclose(g[..., 0], (x / 255.0) @ np.array([0.299, 0.587, 0.114]), atol=1e-5)
    assert load_images(tmp_path / "u.npz", (4, 4, 3)).images.shape == (3, 4, 4, 3)
    assert len(load_images(tmp_path / "u.npz", limit=2).images) == 2


@pytest.mark.parametrize("case, message", [
    ("missing", "images: cannot read path"),
    ("device", "images: expected a folder of image files or an .npz file, got a special file"),
    ("nul", "images: expected a path, got one with a NUL byte"),
    ("empty_folder", "images: found no readable image files"),
    ("pickle", "is not a readable .npz"),
    ("two_arrays", "expected one array"),
    ("out_of_range", "expected floating images in [0, 1]"),
    ("nan", "expected floating images in [0, 1]"),
    ("bad_shape", "images: expected a target shape (H, W, 1 or 3)"),
    ("text", "expected a folder of image files or an .npz file"),
])
def test_bad_inputs_are_one_line(tmp_path, case, message):
    shape = (8, 8, 3)
    if case == "missing":
        path = tmp_path / "nope"
    elif case == "device":
        path = "/dev/zero"
    elif case == "nul":
        path = "a\x00b"
    elif case == "empty_folder":
        path = tmp_path
    elif case == "pickle":
        path = tmp_path / "p.npz"
        np.savez(path, images=np.array([object()], dtype=object))
    elif case == "two_arrays":
        path = tmp_path / "t.npz"
        np.savez(path, a=np.zeros((1, 2, 2, 3)), b=np.zeros(1))
    elif case == "out_of_range":
        path = tmp_path / "o.npz"
        np.savez(path, np.full((1, 2, 2, 3), 7.0, np.float32))
    elif case == "nan":
        path = tmp_path / "n.npz"
        np.savez(path, np.full((1, 2, 2, 3), np.nan, np.float32))
    elif case == "bad_shape":
        path, shape = tmp_path, (8, 8, 2)
    else:
        path = tmp_path / "x.txt"
        path.write_text("hello")
    with pytest.raises(JaxprobeError) as e:
        load_images(path, shape)
    assert message in str(e.value) and "\n" not in str(e.value)
