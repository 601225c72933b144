"""The on-disk data cache (``mtlkit.data.common.cached``): entries are read with
``torch.load(weights_only=True)``, so an entry someone replaced cannot run code; an entry
that fails validation is rebuilt, never trusted; the folder is per user, owner-only."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from mtlkit.data import common, multimnist, text


class _RunsCode:
    """Unpickling this object would call ``exec`` with the given source."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self):
        return (exec, (self.source,))


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MTLKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_malicious_cache_entry_is_never_executed_and_is_rebuilt(cache, tmp_path):
    marker = tmp_path / "pwned"
    path = common.cache_dir() / "demo-abc.pt"
    torch.save({"format": common.CACHE_FORMAT, "name": "demo", "key": "abc",
                "data": _RunsCode(f"open({str(marker)!r}, 'w').write('ran')")}, path)
    built = {"x": torch.arange(3)}
    got = common.cached("demo", "abc", lambda: built)
    assert not marker.exists()  # the pickle's code never ran
    assert torch.equal(got["x"], built["x"])
    again = common.cached("demo", "abc", lambda: pytest.fail("rebuilt a valid entry"))
    assert torch.equal(again["x"], built["x"])  # the rebuilt entry is the one now cached


def test_an_entry_that_fails_validation_is_rebuilt(cache):
    calls = []

    def build():
        calls.append(1)
        return {"y": torch.zeros(4, dtype=torch.long)}

    valid = lambda d: d["y"].shape == (4,) and int(d["y"].max()) < 3  # noqa: E731
    common.cached("v", "k", build, validate=valid)
    path = common.cache_dir() / "v-k.pt"
    doc = torch.load(path, weights_only=True)
    doc["data"]["y"] = torch.full((4,), 99)  # tampered: labels out of range
    torch.save(doc, path)
    out = common.cached("v", "k", build, validate=valid)
    assert len(calls) == 2 and int(out["y"].max()) == 0
    path.write_bytes(b"truncated")
    common.cached("v", "k", build, validate=valid)
    assert len(calls) == 3
    # an entry written for another key (a renamed file) is not taken either
    common.cached("v", "other", build)
    os.replace(common.cache_dir() / "v-other.pt", path)
    common.cached("v", "k", build, validate=valid)
    assert len(calls) == 5


def test_a_text_cache_entry_with_out_of_vocabulary_ids_is_rebuilt(cache):
    from mtlkit.data import registry

    a = registry.load("sentiment", n_per_task=40, max_len=10)
    (path,) = common.cache_dir().glob("text-sentiment-*.pt")
    doc = torch.load(path, weights_only=True)
    x = doc["data"]["train"]["apple"][0]
    x[0, 0] = len(doc["data"]["itos"]) + 5
    torch.save(doc, path)
    b = registry.load("sentiment", n_per_task=40, max_len=10)
    assert torch.equal(a.train["apple"].x, b.train["apple"].x)


def test_cache_entries_hold_only_tensors_and_plain_containers(cache):
    with pytest.raises(TypeError, match="ndarray.*torch.from_numpy"):
        common.cached("np", "k", lambda: {"a": np.zeros(3)})


def test_the_cache_folder_is_per_user_and_owner_only(monkeypatch, tmp_path):
    monkeypatch.delenv("MTLKIT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = common.cache_dir()
    assert path == tmp_path / "xdg" / "mtlkit"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert common.cache_dir() == tmp_path / "home" / ".cache" / "mtlkit"
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: anyone may drop a file in
    monkeypatch.setenv("MTLKIT_CACHE", str(shared))
    with pytest.raises(PermissionError, match="can be written by other users.*chmod 700"):
        common.cache_dir()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777  # a folder it did not make: untouched


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0,
                    reason="needs root to give a folder to another user")
def test_a_cache_folder_of_another_user_is_refused(monkeypatch, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    os.chown(other, 65534, 65534)
    monkeypatch.setenv("MTLKIT_CACHE", str(other))
    with pytest.raises(PermissionError, match="belongs to another user"):
        common.cache_dir()


def test_every_cached_loader_validates_its_entries():
    """The loaders pass a validator, so a tampered but loadable entry is rebuilt."""
    assert multimnist._valid_images({"train": (torch.zeros(2, 28, 28, dtype=torch.uint8),
                                               torch.tensor([0, 9])),
                                     "test": (torch.zeros(1, 28, 28, dtype=torch.uint8),
                                              torch.tensor([3]))})
    assert not multimnist._valid_images({"train": (torch.zeros(2, 28, 28, dtype=torch.uint8),
                                                   torch.tensor([0, 10])),
                                         "test": (torch.zeros(1, 28, 28, dtype=torch.uint8),
                                                  torch.tensor([3]))})
    good = {"itos": ["<pad>", "<unk>", "a"],
            **{s: {"t": (torch.tensor([[2, 0]]), torch.tensor([1]), ["a"])}
               for s in ("train", "val", "test")}}
    assert text.valid_text_entry(good, ["t"], 2)
    assert not text.valid_text_entry(good, ["t", "u"], 2)  # built for other tasks
    assert not text.valid_text_entry(good, ["t"], 3)  # other max_len
