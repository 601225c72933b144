"""The papers' benchmark loaders, on fixtures in exactly the layouts the data_scripts
write: correct sizes and item shapes, and the checksum / missing-data / bad-task paths."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
from support import fx

from mtlkit.data import registry
from mtlkit.data.common import MANIFEST, DataCorrupt, DataUnavailable

NAMES = sorted(fx.MAKERS)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any socket use while loading fails the test (the loaders must be offline)."""
    def refuse(*a, **k):
        raise AssertionError("a data loader tried to open a network socket")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """One prepared fixture tree per dataset (built once for the module)."""
    out = {}
    for name in NAMES:
        root = tmp_path_factory.mktemp(name)
        out[name] = (root, fx.MAKERS[name](root))
    return out


def _fresh(tmp_path: Path, name: str):
    return tmp_path, fx.MAKERS[name](tmp_path)


def test_registry_lists_every_benchmark():
    assert set(NAMES) == set(registry.names("benchmarks"))
    with pytest.raises(ValueError, match="unknown dataset"):
        registry.load("imagenet")


def test_dataset_names_follow_the_one_registry_rule():
    """The datasets are looked up like strategies and architectures (mtlkit.registry): case,
    '-' and '_' do not matter, and an unknown name lists the choices."""
    assert registry.DATASETS.key("Multi-Fashion-MNIST") == "multi_fashion_mnist"
    assert registry.DATASETS.key("NYUv2") == "nyuv2"
    assert registry.names("all")[:2] == ["topics", "sentiment"]  # embedded first, as listed
    assert set(registry.DATASETS.names()) == set(registry.names("all"))
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; choose one of: .*topics"):
        registry.load("imagenet")


@pytest.mark.parametrize("name", NAMES)
def test_loads_fixture_with_expected_sizes(trees, name):
    root, f = trees[name]
    data = registry.load(name, root=root, **f.kwargs)
    assert data.task_names == f.tasks
    assert data.sizes() == f.sizes
    x, y = (data.train[f.tasks[0]] if data.homogeneous else data.train)[0]
    if data.homogeneous:
        assert torch.is_tensor(y) and y.dtype == torch.long
    else:
        assert set(y) == set(f.tasks)
        for spec in data.tasks:
            if spec.kind == "segmentation":
                assert y[spec.name].dtype == torch.long and y[spec.name].dim() == 2
                assert int(y[spec.name].min()) >= -1
                assert int(y[spec.name].max()) < spec.num_classes
            elif spec.kind == "normals":
                assert y[spec.name].shape[0] == 3
    if torch.is_tensor(x) and x.is_floating_point():
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


@pytest.mark.parametrize("name", NAMES)
def test_corrupt_byte_is_caught_even_after_a_good_load(tmp_path, name):
    root, f = _fresh(tmp_path, name)
    registry.load(name, root=root, **f.kwargs)  # records the verified stamps
    victim = root / f.victim
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, different bytes
    victim.write_bytes(bytes(raw))
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a later modification
    with pytest.raises(DataCorrupt, match="sha256"):
        registry.load(name, root=root, **f.kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_truncated_file_is_caught(tmp_path, name):
    root, f = _fresh(tmp_path, name)
    victim = root / f.victim
    victim.write_bytes(victim.read_bytes()[:-7])
    with pytest.raises(DataCorrupt, match="bytes"):
        registry.load(name, root=root, **f.kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_deleted_file_is_caught(tmp_path, name):
    root, f = _fresh(tmp_path, name)
    (root / f.victim).unlink()
    with pytest.raises(DataCorrupt, match="missing"):
        registry.load(name, root=root, **f.kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_missing_dataset_names_the_script(trees, tmp_path, name):
    script = trees[name][1].script
    with pytest.raises(DataUnavailable, match=rf"data_scripts/{script}"):
        registry.load(name, root=tmp_path)  # an empty data root


@pytest.mark.parametrize("name", NAMES)
def test_unknown_task_is_a_clear_error(trees, name):
    root, f = trees[name]
    with pytest.raises(ValueError, match="unknown task"):
        registry.load(name, root=root, tasks=["no_such_task"], **f.kwargs)


@pytest.mark.parametrize("name", ["amazon_sentiment", "nyuv2", "xtreme_pi"])
def test_broken_manifest_is_corrupt_not_a_traceback(tmp_path, name):
    root, f = _fresh(tmp_path, name)
    mf = next(root.rglob(MANIFEST))
    mf.write_text("{not json")
    with pytest.raises(DataCorrupt, match="manifest"):
        registry.load(name, root=root, **f.kwargs)


def test_task_subset_and_verify_modes(tmp_path):
    root, f = _fresh(tmp_path, "nyuv2")
    data = registry.load("nyuv2", root=root, tasks=["depth"], verify="full")
    x, y = data.train[0]
    assert x.shape == (3, 288, 384) and set(y) == {"depth"} and y["depth"].shape == (1, 288, 384)
    with pytest.raises(ValueError, match="verify"):
        registry.load("nyuv2", root=root, verify="sometimes")


def test_xtreme_collate_pads_tags_with_ignore_index(trees):
    root, f = trees["xtreme_pos"]
    data = registry.load("xtreme_pos", root=root)
    batch = [data.train["en"][i] for i in range(3)]
    xs, ys = data.meta["collate"](batch)
    assert len(xs) == 3 and ys.shape == (3, max(len(x) for x in xs))
    for i, x in enumerate(xs):
        assert (ys[i, len(x):] == -1).all() and (ys[i, :len(x)] >= 0).all()
