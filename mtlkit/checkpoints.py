"""Checkpoints of a training run: written safely, read without running code, and
resumed only into the run that wrote them.

A run folder holds at most two checkpoints: ``checkpoint.pt`` (the last one) and
``checkpoint.prev.pt`` (the one before it).  A save writes a temporary file,
flushes it to disk, keeps the current checkpoint as the previous one (a hard link,
or a copy where links are not supported), then renames the new file over
``checkpoint.pt``: at every instant ``checkpoint.pt`` is either the old complete
checkpoint or the new one, and a kill at any point loses at most the save in
progress.

Loading uses ``torch.load(..., weights_only=True)``: only tensors, numbers,
strings and containers are rebuilt, so a crafted file cannot run code.  What a
run saves that is not one of these (NumPy arrays and scalars, e.g. NumPy's RNG
state or Nash-MTL's alpha) is stored as raw bytes with its dtype and shape and
turned back into NumPy on load; anything else is refused when *saving*, naming
the entry, so that no checkpoint is written that cannot be read back.

Every checkpoint carries the *identity* of its run (:func:`run_identity`): the
strategy and its hyper-parameters, the model's class and parameter shapes, the
data (name, tasks, split sizes and a fingerprint of a few examples of every
split) and the settings that shape the trajectory.  A resume is refused unless
the identity of the run being built equals the saved one, with the list of what
differs.  Errors say which file is at fault and what the choices are: resume
from the previous checkpoint (``fit(resume="prev")``) or start afresh
(``fit(resume=False)``, which trains in a new folder next to the old one).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mtlkit.utils import jsonable

LAST, PREV = "checkpoint.pt", "checkpoint.prev.pt"
BEST = "best_model.pt"  #: the weights of the epoch that model selection chose
#: the model files each ``keep_files`` choice deletes once a run has finished
PRUNED = {"all": (), "best": (LAST, PREV), "none": (LAST, PREV, BEST)}
FORMAT = "mtlkit-checkpoint/2"  #: written in every checkpoint; others are refused
_NUMPY = "__numpy__"  #: tag of an encoded NumPy array or scalar
_PLAIN = (str, int, float, bool, type(None), torch.dtype, torch.device, torch.Size)
_SCALARS = frozenset({str, int, float, bool, type(None)})  #: exact types: a fast path
_AFRESH = ("start afresh with fit(resume=False), which trains in a new folder next to "
           "this one (or give the Trainer another run_dir)")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message names the file and the choices."""


class CheckpointDamaged(CheckpointError):
    """The file is empty, truncated or not a checkpoint."""


class CheckpointUnsafe(CheckpointError):
    """Reading the file would need code that a safe load refuses to run."""


class CheckpointMismatch(CheckpointError, ValueError):
    """The checkpoint belongs to another run (strategy, model, data or settings)."""


class NothingToResume(CheckpointError):
    """``resume`` was asked for, the run folder is not empty, and no checkpoint is usable."""


# ------------------------------------------------------------------ identity
def run_identity(model: nn.Module, weighting: Any, data: Any,
                 config: Mapping[str, Any]) -> dict[str, Any]:
    """What defines a run, as plain values: two runs with equal identities follow
    the same trajectory (given the same code and machine)."""
    w = type(weighting)
    return {
        "strategy": {"name": weighting.name, "class": f"{w.__module__}.{w.__qualname__}",
                     "hparams": jsonable(weighting.hparams())},
        "model": {"class": f"{type(model).__module__}.{type(model).__qualname__}",
                  "tasks": list(getattr(model, "tasks", [])),
                  "parameters": {k: list(v.shape) for k, v in model.state_dict().items()}},
        "data": {"name": data.name, "homogeneous": bool(data.homogeneous),
                 "tasks": [[t.name, t.kind, t.num_classes, t.ignore_index] for t in data.tasks],
                 "sizes": data.sizes(), "fingerprint": data_fingerprint(data)},
        "config": jsonable(dict(config)),
    }


def data_fingerprint(data: Any, per_split: int = 5) -> str:
    """A hash of ``per_split`` evenly spaced examples (first and last included) of
    every split and task: cheap, and it changes when the examples do."""
    h = hashlib.blake2b(digest_size=12)
    for split in ("train", "val", "test"):
        part = data.split(split)
        sets = part.items() if isinstance(part, Mapping) else [("*", part)]
        for key, ds in sets:
            n = len(ds)
            h.update(f"{split}/{key}/{n};".encode())
            for i in sorted({round(j * (n - 1) / max(per_split - 1, 1)) for j in
                             range(per_split)} if n else set()):
                _hash_into(h, ds[i])
    return h.hexdigest()


def _hash_into(h: Any, v: Any) -> None:
    if isinstance(v, Tensor):
        t = v.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(v.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(v, np.ndarray) and not v.dtype.hasobject:
        h.update(f"A{v.dtype}{v.shape}".encode() + np.ascontiguousarray(v).tobytes())
    elif isinstance(v, Mapping):
        for k in sorted(v, key=str):
            h.update(f"K{k!s};".encode())
            _hash_into(h, v[k])
    elif isinstance(v, (list, tuple)):
        h.update(f"L{len(v)};".encode())
        for x in v:
            _hash_into(h, x)
    elif isinstance(v, (str, bytes, int, float, bool, np.generic)) or v is None:
        h.update(f"{type(v).__name__}:{v!r};".encode())
    else:  # an object we cannot read reliably: its type at least
        h.update(f"O{type(v).__qualname__};".encode())


def check_identity(saved: Mapping[str, Any], now: Mapping[str, Any], path: Path) -> None:
    """Raise :class:`CheckpointMismatch` listing every entry that differs."""
    a, b = _flatten(saved), _flatten(now)
    diff = [k for k in sorted(set(a) | set(b)) if a.get(k, "(absent)") != b.get(k, "(absent)")]
    if not diff:
        return
    lines = [f"  {k}: saved {a.get(k, '(absent)')!r}, now {b.get(k, '(absent)')!r}"
             for k in diff[:12]]
    if len(diff) > 12:
        lines.append(f"  ... and {len(diff) - 12} more")
    raise CheckpointMismatch(
        f"cannot resume {path}: the configuration changed since it was saved "
        f"(saved vs now):\n" + "\n".join(lines) + "\nTo continue that run, build the Trainer "
        "as it was (same strategy and hyper-parameters, model, data and settings); to train "
        f"this configuration, {_AFRESH}.")


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, Mapping):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


# ------------------------------------------------------------------ encoding
def encode(obj: Any, where: str = "") -> Any:
    """``obj`` with NumPy arrays/scalars replaced by tagged byte tensors; raises
    TypeError naming the entry (``where``) for anything a safe load could not rebuild."""
    if isinstance(obj, (np.ndarray, np.generic)):
        arr = np.asarray(obj)
        if arr.dtype.hasobject:
            raise TypeError(f"{where or 'the value'} is a NumPy array of Python objects")
        raw = torch.frombuffer(bytearray(np.ascontiguousarray(arr).tobytes()) or bytearray(1),
                               dtype=torch.uint8)[: arr.nbytes]
        return {_NUMPY: raw, "dtype": arr.dtype.str, "shape": list(arr.shape),
                "scalar": isinstance(obj, np.generic)}
    if isinstance(obj, (Tensor, *_PLAIN)):
        return obj
    if type(obj) in (dict, list, tuple) and all(
            type(v) in _SCALARS for v in (obj.values() if type(obj) is dict else obj)):
        return obj  # e.g. a row of the step log
    if isinstance(obj, Mapping):
        items = {k: encode(v, f"{where}.{k}" if where else str(k)) for k, v in obj.items()}
        same = type(obj) in (dict, OrderedDict) and all(items[k] is v for k, v in obj.items())
        return obj if same else items  # unchanged containers keep their type and metadata
    if isinstance(obj, (list, tuple)):
        seq = [encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        same = type(obj) in (list, tuple) and all(a is b for a, b in zip(seq, obj))
        return obj if same else (tuple(seq) if isinstance(obj, tuple) else seq)
    raise TypeError(f"{where or 'the value'} is a {type(obj).__qualname__}, which a safe load "
                    "cannot rebuild; store tensors, numbers, strings, lists or dicts")


def decode(obj: Any) -> Any:
    """Inverse of :func:`encode` (containers with nothing encoded in them are returned
    as they are, keeping e.g. a ``state_dict``'s ``_metadata``)."""
    if type(obj) in (dict, list, tuple) and all(
            type(v) in _SCALARS for v in (obj.values() if type(obj) is dict else obj)):
        return obj
    if isinstance(obj, Mapping):
        if _NUMPY in obj:
            dtype = np.dtype(obj["dtype"])
            if dtype.hasobject:
                raise TypeError("a NumPy array of Python objects")
            arr = np.frombuffer(obj[_NUMPY].numpy().tobytes(), dtype=dtype).reshape(
                obj["shape"]).copy()
            return arr[()] if obj["scalar"] else arr
        items = {k: decode(v) for k, v in obj.items()}
        return obj if all(items[k] is v for k, v in obj.items()) else items
    if isinstance(obj, (list, tuple)):
        seq = [decode(v) for v in obj]
        return obj if all(a is b for a, b in zip(seq, obj)) else type(obj)(seq)
    return obj


# ------------------------------------------------------------------ files
def save(obj: Any, path: str | Path, *, keep_previous: bool = False) -> None:
    """Write ``obj`` (encoded) to ``path`` atomically: temporary file, flushed to
    disk, then renamed.  ``keep_previous`` first keeps the current file as
    ``checkpoint.prev.pt`` beside it (so ``path`` itself never goes missing)."""
    path = Path(path)
    try:
        data = encode(obj)
    except TypeError as e:
        raise TypeError(f"cannot save {path}: {e}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(data, f)
        f.flush()
        os.fsync(f.fileno())
    if keep_previous and path.exists():
        _link_or_copy(path, path.with_name(PREV))
    os.replace(tmp, path)


def _link_or_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # no hard links on this file system
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def load(path: str | Path) -> Any:
    """Read what :func:`save` wrote, without running code.

    Raises :class:`CheckpointDamaged` (empty, truncated, not written by
    ``torch.save``) or :class:`CheckpointUnsafe` (it would need code to load)."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        size = path.stat().st_size
        raise CheckpointDamaged(f"{path} is damaged: "
                                + ("it is empty" if size == 0 else
                                   f"its {size} bytes are not a torch.save archive "
                                   "(truncated, or another kind of file)"))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = _unsafe_globals(path)
        if unsafe:
            raise CheckpointUnsafe(
                f"{path} was refused: loading it would run code or build objects "
                f"({', '.join(unsafe[:5])}) that a safe load (weights_only=True) does not "
                "allow. Nothing in it was run. If you did not write it, delete it (checkpoints "
                "of mtlkit versions that did not load safely are refused too: rebuild one by "
                "training the run afresh).") from e
        raise CheckpointDamaged(f"{path} is damaged: {_first_line(e)}") from e
    except (RuntimeError, EOFError, OSError, KeyError, ValueError) as e:
        raise CheckpointDamaged(f"{path} is damaged (truncated or overwritten): "
                                f"{_first_line(e)}") from e
    try:
        return decode(obj)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise CheckpointDamaged(f"{path} is damaged: an encoded array cannot be read "
                                f"back ({e})") from e


def _unsafe_globals(path: Path) -> list[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # an unreadable archive: reported as damaged
        return []


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def load_weights(path: str | Path) -> Mapping[str, Tensor]:
    """A model's ``state_dict`` saved with :func:`save` (e.g. ``best_model.pt``), read
    safely; raises :class:`CheckpointError` naming the file."""
    state = load(path)
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointDamaged(f"{path} holds no model weights (a dict of tensors); "
                                "train the run again to rebuild it")
    return state


# ------------------------------------------------------------------ a run's folder
class RunCheckpoints:
    """The checkpoints of one run folder: ``checkpoint.pt`` and the one before it.

    :meth:`save` writes the trainer's state with the run's identity;
    :meth:`resume` returns the state to continue from, after checking that it
    belongs to the run being built.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.last, self.prev = self.run_dir / LAST, self.run_dir / PREV
        # the current checkpoint.pt may be kept as the previous one only once it is
        # known to be good (written by this run, or resumed from)
        self._last_is_good = False

    def save(self, state: Mapping[str, Any], identity: Mapping[str, Any]) -> None:
        """Write ``state`` as ``checkpoint.pt``, keeping the last good one as
        ``checkpoint.prev.pt``."""
        save({"format": FORMAT, "run": dict(identity), **state}, self.last,
             keep_previous=self._last_is_good)
        self._last_is_good = True

    def resume(self, identity: Mapping[str, Any], which: str = "last"
               ) -> dict[str, Any] | None:
        """The saved state to continue (``which``: ``"last"`` or ``"prev"``), or
        None when the folder is empty or absent (nothing was started there).

        Never silently starts over: a folder with something in it but no usable
        checkpoint raises a :class:`CheckpointError` that says what to do."""
        if which not in ("last", "prev"):
            raise ValueError(f"resume={which!r}; use True (the last checkpoint), 'prev' "
                             "(the one before it) or False (start afresh)")
        path = self.last if which == "last" else self.prev
        if not path.exists():
            if not self.run_dir.exists() or not any(self.run_dir.iterdir()):
                return None
            raise NothingToResume(self._why_nothing(path))
        try:
            state = load(path)
            if not isinstance(state, Mapping) or state.get("format") != FORMAT:
                raise CheckpointDamaged(
                    f"{path} is not a checkpoint of this version of mtlkit (format "
                    f"{state.get('format') if isinstance(state, Mapping) else None!r}, "
                    f"expected {FORMAT!r}); it cannot be resumed")
        except CheckpointError as e:
            raise type(e)(f"{e}\n{self._choices(path)}") from e
        check_identity(state["run"], identity, path)
        self._last_is_good = which == "last"  # resuming from prev: checkpoint.pt is not kept
        return dict(state)

    def _choices(self, bad: Path) -> str:
        """What to do when ``bad`` cannot be used: the other checkpoint, if it is
        intact, or starting afresh."""
        other, how = (self.prev, "resume='prev'") if bad == self.last else (self.last,
                                                                             "resume=True")
        if other.exists():
            try:
                state = load(other)
                step = state.get("step", "?") if isinstance(state, Mapping) else "?"
            except CheckpointError:
                step = None
            if step is not None:
                which = "previous" if other == self.prev else "last"
                return (f"Choose: resume from the {which} checkpoint {other} (step {step}, "
                        f"intact) with fit({how}), or {_AFRESH}.")
        return f"No intact checkpoint is left to resume from: {_AFRESH}."

    def _why_nothing(self, path: Path) -> str:
        tmp = path.with_name(path.name + ".tmp")
        if path == self.last and (self.run_dir / "summary.json").exists():
            return (f"cannot resume: {path} does not exist because the run in {self.run_dir} "
                    "finished and its checkpoints were removed (TrainConfig.keep_files); its "
                    f"results are there. To train it longer, {_AFRESH}.")
        if path == self.prev and self.last.exists() and not tmp.exists():
            return (f"cannot resume from {path}: the run in {self.run_dir} saved only one "
                    "checkpoint so far (a previous one is kept from the second save on; "
                    f"set checkpoint_every to save during training). {self._choices(path)}")
        if tmp.exists():
            what = (f"its save was interrupted ({tmp.name} is left, incomplete or never "
                    "renamed)")
        else:
            what = ("the run there stopped before its first checkpoint (set "
                    "checkpoint_every to save during training)")
        return (f"cannot resume: {path} does not exist, but {self.run_dir} is not empty: "
                f"{what}. {self._choices(path) if path == self.last else _AFRESH + '.'}")


def prune(run_dir: str | Path, keep_files: str) -> list[Path]:
    """Delete a finished run's model files that ``keep_files`` does not keep
    (:data:`PRUNED`); returns the deleted paths.  Results, step log and summary stay."""
    if keep_files not in PRUNED:
        raise ValueError(f"keep_files={keep_files!r}; choose one of {tuple(PRUNED)}")
    gone = [Path(run_dir) / n for n in PRUNED[keep_files] if (Path(run_dir) / n).exists()]
    for f in gone:
        f.unlink()
    return gone


# ------------------------------------------------------------------ a run's state
def capture(objects: Mapping[str, Any], *parts: Any, **values: Any) -> dict[str, Any]:
    """A run's state: ``objects``' ``state_dict()`` under their names (None stays None: e.g.
    no scheduler), every part's ``state()`` merged in, and ``values``."""
    state = {k: None if v is None else v.state_dict() for k, v in objects.items()}
    for part in parts:
        state.update(part.state())
    return {**state, **values}


def restore(state: Mapping[str, Any], objects: Mapping[str, Any], *parts: Any) -> None:
    """The inverse of :func:`capture` for ``objects`` and ``parts`` (in that order)."""
    for k, v in objects.items():
        if v is not None:
            v.load_state_dict(state[k])
    for part in parts:
        part.load(state)


# ------------------------------------------------------------------ opening a run's folder
def fresh_dir(path: Path) -> Path:
    """``path`` if it does not exist or is empty, else ``path-1``, ``path-2``, ...

    The directory is claimed by creating ``.run`` exclusively (``O_EXCL``), so two
    processes starting at once never share a directory."""
    i = 0
    while True:
        cand = path if i == 0 else path.with_name(f"{path.name}-{i}")
        i += 1
        if cand.exists() and any(cand.iterdir()):
            continue
        cand.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(cand / ".run", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        return cand


def open_run(run_dir: str | Path, identity: Mapping[str, Any], resume: bool | str
             ) -> tuple[RunCheckpoints, dict[str, Any] | None]:
    """The checkpoints of the folder a run trains in, and the state it continues from.

    ``resume=False``: a fresh folder (``run_dir``, or ``run_dir-1``, ... when it is not
    empty) and None.  ``resume=True`` / ``"prev"``: ``run_dir`` and the state of its last /
    previous checkpoint (see :meth:`RunCheckpoints.resume`; an absent or empty ``run_dir``
    starts afresh there)."""
    store = RunCheckpoints(run_dir)
    state = store.resume(identity, "last" if resume is True else resume) if resume else None
    if state is None:
        store = RunCheckpoints(fresh_dir(Path(run_dir)))  # only once the folder is ours
    return store, state
