"""Pixel conventions: round trips and conversions against hand-computed values."""

import numpy as np
import pytest

from jaxprobe import JaxprobeError, PixelConvention, adapt_images, center_crop, convert_pixels

MEAN_BGR = (104.0, 117.0, 123.0)


def test_tanh_to_unit_interval():
    src, dst = PixelConvention(-1.0, 1.0, "gray"), PixelConvention(0.0, 1.0, "gray")
    x = np.linspace(-1, 1, 5, dtype=np.float32).reshape(1, 5, 1, 1)
    np.testing.assert_allclose(convert_pixels(x, src, dst), (x + 1) / 2, atol=1e-7)


def test_bgr_mean_subtracted_round_trip_and_values():
    caffe = PixelConvention(0.0, 255.0, "BGR", MEAN_BGR)
    rgb = np.random.default_rng(0).random((2, 4, 4, 3)).astype(np.float32)
    x = np.asarray(caffe.from_canonical(rgb))
    np.testing.assert_allclose(x, rgb[..., ::-1] * 255.0 - np.asarray(MEAN_BGR), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(caffe.to_canonical(x), rgb, atol=1e-5)


def test_gray_to_rgb_and_back():
    gray = PixelConvention(-1.0, 1.0, "gray")
    rgb = PixelConvention(0.0, 255.0, "RGB")
    x = np.random.default_rng(1).uniform(-1, 1, (3, 5, 5, 1)).astype(np.float32)
    y = np.asarray(convert_pixels(x, gray, rgb))
    assert y.shape == (3, 5, 5, 3)
    np.testing.assert_allclose(y, np.repeat((x + 1) / 2 * 255.0, 3, axis=-1), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(convert_pixels(y, rgb, gray), x, atol=1e-5)


def test_errors():
    with pytest.raises(JaxprobeError, match="channels: expected 'gray', 'RGB' or 'BGR', got 'YUV'"):
        PixelConvention(0, 1, "YUV")
    with pytest.raises(JaxprobeError, match="high: expected high > low"):
        PixelConvention(1, 0)
    with pytest.raises(JaxprobeError, match=r"images: expected 3 channel\(s\) for RGB pixels"):
        convert_pixels(np.zeros((1, 2, 2, 1)), PixelConvention(0, 1, "RGB"), PixelConvention())
    with pytest.raises(JaxprobeError, match="size: expected at most 8"):
        center_crop(np.zeros((1, 8, 10, 3)), 9)


def test_center_crop_256_to_227():
    x = np.arange(256 * 256, dtype=np.float32).reshape(1, 256, 256, 1)
    y = np.asarray(center_crop(x, 227))
    assert y.shape == (1, 227, 227, 1)
    assert y[0, 0, 0, 0] == x[0, 14, 14, 0]


def test_adapt_images_converts_then_crops_like_caffe_feeds_caffenet():
    """DeePSim's 256 x 256 BGR-minus-mean output into a classifier reading [0, 1] RGB at 227."""
    src = PixelConvention(0.0, 255.0, "BGR", MEAN_BGR)
    dst = PixelConvention(0.0, 1.0, "RGB")
    x = np.random.default_rng(2).uniform(-100, 100, (2, 256, 256, 3)).astype(np.float32)
    y = np.asarray(adapt_images(x, src, dst, (227, 227, 3)))
    want = (x[:, 14:241, 14:241, ::-1] + np.asarray(MEAN_BGR)[::-1]) / 255.0  # by hand
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    # same size or a flat input: no crop; no conventions: values untouched
    assert adapt_images(x, src, dst, (4096,)).shape == x.shape
    np.testing.assert_array_equal(adapt_images(x, None, dst, (256, 256, 3)), x)
    np.testing.assert_array_equal(adapt_images(x[:, :8, :8], src, None, None), x[:, :8, :8])
    with pytest.raises(JaxprobeError, match="size: expected at most 256"):
        adapt_images(x, src, dst, (300, 300, 3))
