"""One entry point for every dataset: ``load(name, **kw)`` and ``names()``.

Embedded (offline, installed by ``scripts/setup.sh``): ``topics``, ``sentiment``,
``multimnist``, ``multifashion``, ``multi_fashion_mnist``, ``scenes`` (synthetic).
The papers' benchmarks (prepared by ``data_scripts/<script>``): ``amazon_sentiment``,
``newsgroups``, ``nyuv2``, ``cityscapes``, ``pascal_context``, ``celeba``, ``office31``,
``office_home``, ``xtreme_pos``, ``xtreme_ner``, ``xtreme_nli``, ``xtreme_pi``.
"""

from __future__ import annotations

from collections.abc import Callable

from mtlkit.data.base import MTLData
from mtlkit.registry import Registry


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


def _register_all() -> None:
    for name, loader in {**EMBEDDED, **BENCHMARKS}.items():
        DATASETS.add(name, loader)


#: every dataset, looked up by :mod:`mtlkit.registry`'s rules (case, ``-``, ``_`` and
#: spaces do not matter; an unknown name lists the choices)
DATASETS: Registry[Callable[..., MTLData]] = Registry("dataset", load=_register_all)


def names(kind: str = "all") -> list[str]:
    """Dataset names: ``"embedded"``, ``"benchmarks"`` or ``"all"`` (embedded first)."""
    table = {"embedded": EMBEDDED, "benchmarks": BENCHMARKS, "all": {**EMBEDDED, **BENCHMARKS}}
    if kind not in table:
        raise ValueError(f"kind={kind!r}; choose embedded, benchmarks or all")
    return list(table[kind])


def load(name: str, **kw) -> MTLData:
    """Load a dataset by name (:data:`DATASETS`' rules); keyword arguments go to its loader
    (see its docstring)."""
    return DATASETS.build(name, **kw)
