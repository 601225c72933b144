"""One entry point for every dataset: ``load(name, **kw)`` and ``names()``.

Embedded (offline, installed by ``scripts/setup.sh``): ``topics``, ``sentiment``,
``multimnist``, ``multifashion``, ``multi_fashion_mnist``, ``scenes`` (synthetic).
The papers' benchmarks (prepared by ``data_scripts/<script>``): ``amazon_sentiment``,
``newsgroups``, ``nyuv2``, ``cityscapes``, ``pascal_context``, ``celeba``, ``office31``,
``office_home``, ``xtreme_pos``, ``xtreme_ner``, ``xtreme_nli``, ``xtreme_pi``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from mtlkit.data.base import MTLData


def _lazy(module: str, func: str, **bound) -> Callable[..., MTLData]:
    def call(**kw) -> MTLData:
        import importlib

        return getattr(importlib.import_module(f"mtlkit.data.{module}"), func)(**bound, **kw)

    return call


EMBEDDED: dict[str, Callable[..., MTLData]] = {
    "topics": _lazy("topics", "load_topics"),
    "sentiment": _lazy("sentiment", "load_sentiment"),
    "multimnist": _lazy("multimnist", "load_multimnist", variant="multimnist"),
    "multifashion": _lazy("multimnist", "load_multimnist", variant="multifashion"),
    "multi_fashion_mnist": _lazy("multimnist", "load_multimnist",
                                 variant="multi_fashion_mnist"),
    "scenes": _lazy("scenes", "load_scenes"),
}
BENCHMARKS: dict[str, Callable[..., MTLData]] = {
    "amazon_sentiment": _lazy("amazon", "load_amazon"),
    "newsgroups": _lazy("newsgroups", "load_newsgroups"),
    "nyuv2": _lazy("nyuv2", "load_nyuv2"),
    "cityscapes": _lazy("cityscapes", "load_cityscapes"),
    "pascal_context": _lazy("pascal_context", "load_pascal_context"),
    "celeba": _lazy("celeba", "load_celeba"),
    "office31": _lazy("office", "load_office", name="office31"),
    "office_home": _lazy("office", "load_office", name="office_home"),
    **{f"xtreme_{p}": _lazy("xtreme", "load_xtreme", problem=p)
       for p in ("pos", "ner", "nli", "pi")},
}


@functools.cache
def _all() -> dict[str, Callable[..., MTLData]]:
    return {**EMBEDDED, **BENCHMARKS}


def names(kind: str = "all") -> list[str]:
    """Dataset names: ``"embedded"``, ``"benchmarks"`` or ``"all"``."""
    table = {"embedded": EMBEDDED, "benchmarks": BENCHMARKS, "all": _all()}
    if kind not in table:
        raise ValueError(f"kind={kind!r}; choose embedded, benchmarks or all")
    return list(table[kind])


def load(name: str, **kw) -> MTLData:
    """Load a dataset by name; keyword arguments go to its loader (see its docstring)."""
    if name not in _all():
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(_all())}")
    return _all()[name](**kw)
