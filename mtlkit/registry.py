"""One registry style for everything looked up by name: strategies, architectures, datasets.

Lookup rules (the same for every registry):

* A name is matched **case-insensitively, ignoring ``-``, ``_`` and spaces**: ``"nash_mtl"``,
  ``"NashMTL"`` and ``"Nash-MTL"`` all find ``Nash-MTL``.  Two registered names that match
  each other are refused at registration.
* An unknown name raises ``ValueError("unknown <kind> 'foo'; choose one of: a, b, c")``,
  listing the registered names in sorted order.
* :meth:`Registry.build` calls the registered object with keyword arguments and refuses a
  keyword it does not take: ``"<Name> has no <argument> 'x'; valid ones: ..."``.

A registry may be filled lazily: ``load`` (called once, before the first lookup) imports the
modules whose entries register themselves.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_IGNORED = str.maketrans("", "", "-_ ")


def normalize(name: str) -> str:
    """The lookup key of ``name``: case-folded, without ``-``, ``_`` and spaces."""
    return str(name).casefold().translate(_IGNORED)


class Registry(Generic[T]):
    """Names -> objects (classes or factories), looked up by the rules of the module docstring.

    Parameters
    ----------
    kind:
        What the entries are, for messages (``"weighting strategy"``, ``"architecture"``).
    load:
        Called once before the first lookup, to import the modules that register entries.
    argument:
        What :meth:`build`'s keyword arguments are called in messages (``"hyper-parameter"``).
    """

    def __init__(self, kind: str, load: Callable[[], None] | None = None,
                 argument: str = "argument") -> None:
        self.kind, self.argument = kind, argument
        self._load, self._entries, self._keys = load, {}, {}

    # ------------------------------------------------------------ filling
    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name`` (its canonical spelling); returns ``obj``."""
        if not isinstance(name, str) or not normalize(name):
            raise TypeError(f"a {self.kind} needs a non-empty name, got {name!r}")
        key = normalize(name)
        old = self._keys.get(key)
        if old is not None and self._entries[old] is not obj:
            raise TypeError(f"two {self.kind} entries are called {name!r}"
                            + (f" (and {old!r})" if old != name else ""))
        self._keys[key], self._entries[name] = name, obj
        return obj

    def _loaded(self) -> dict[str, T]:
        if self._load is not None:
            load, self._load = self._load, None  # entries may look names up while loading
            try:
                load()
            except BaseException:
                self._load = load  # try again at the next lookup
                raise
        return self._entries

    # ------------------------------------------------------------ lookup
    def names(self) -> list[str]:
        """Every registered name (canonical spelling), sorted."""
        return sorted(self._loaded())

    def key(self, name: str) -> str:
        """The canonical name that ``name`` matches; ``ValueError`` listing the choices."""
        self._loaded()
        found = self._keys.get(normalize(name))
        if found is None:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of: "
                             + ", ".join(self.names()))
        return found

    def __getitem__(self, name: str) -> T:
        return self._loaded()[self.key(name)]

    def __contains__(self, name: object) -> bool:
        self._loaded()
        return isinstance(name, str) and normalize(name) in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._loaded())

    def build(self, name: str, /, **kwargs: Any) -> Any:
        """Call the entry ``name`` with ``kwargs`` (a class: an instance), after checking
        that it takes every keyword (entries with ``**kwargs`` take any)."""
        key = self.key(name)
        obj = self._entries[key]
        params = inspect.signature(obj).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            valid = [k for k, p in params.items()
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            bad = sorted(set(kwargs) - set(valid))
            if bad:
                raise ValueError(f"{key} has no {self.argument} {', '.join(map(repr, bad))}; "
                                 f"valid ones: {', '.join(valid) or '(none)'}")
        return obj(**kwargs)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"
