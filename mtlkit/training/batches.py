"""Training batches: resumable shuffled streams and the support/query split.

:class:`TrainBatches` draws one step's ``(inputs, targets)`` from the training split of an
:class:`~mtlkit.data.base.MTLData`, whatever its shape (:mod:`mtlkit.data.layout`): one
stream per part (each task's set, or the one set of all tasks), one batch of every part
per step.  Smaller parts cycle, reshuffled at each of their passes.

Support/query split (bi-level strategies, ``metaweighting.txt`` §3): with
``query_ratio > 0`` each part is split once, by the seed, into support (trained on) and
query (drawn as the step's query batch, and evaluated every epoch).

A :class:`Stream` draws a fresh permutation from a ``torch.Generator`` seeded by (seed,
stream, pass) at each pass over a dataset, so its position (pass, batches used) is two
integers and a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from mtlkit.data.base import MTLData
from mtlkit.training.device import DevicePolicy

QUERY_KEY = 1000  #: stream keys of the query parts start here (support parts: 0, 1, ...)


class PermutationSampler(Sampler[int]):
    """The indices perm[start:] of one seeded permutation of range(n)."""

    def __init__(self, n: int, seed: int, start: int = 0) -> None:
        self.n, self.seed, self.start = n, seed, start

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed)
        return iter(torch.randperm(self.n, generator=g)[self.start:].tolist())

    def __len__(self) -> int:
        return self.n - self.start


class Stream:
    """An endless, resumable stream of shuffled batches of one dataset.

    Pass ``p`` uses the permutation drawn from ``torch.Generator`` seeded with
    ``seed * 1_000_003 + key * 10_007 + p``; :meth:`state` is ``(p, batches
    used in pass p)`` and :meth:`load` restores it exactly.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, key: int,
                 num_workers: int = 0) -> None:
        if len(dataset) == 0:
            raise ValueError("a training dataset is empty")
        self.dataset, self.bs, self.seed, self.key = dataset, batch_size, seed, key
        self.num_workers = num_workers
        self.passes, self.used = 0, 0
        self._it: Iterator | None = None

    @property
    def batches_per_pass(self) -> int:
        return math.ceil(len(self.dataset) / self.bs)

    def _open(self) -> None:
        seed = self.seed * 1_000_003 + self.key * 10_007 + self.passes
        sampler = PermutationSampler(len(self.dataset), seed, self.used * self.bs)
        # an explicit generator: opening a DataLoader iterator must not draw from
        # the global RNG (it would shift dropout etc. after a resume)
        self._it = iter(DataLoader(self.dataset, batch_size=self.bs, sampler=sampler,
                                   num_workers=self.num_workers,
                                   generator=torch.Generator().manual_seed(seed)))

    def __next__(self) -> Any:
        if self.used >= self.batches_per_pass:
            self.passes, self.used, self._it = self.passes + 1, 0, None
        if self._it is None:
            self._open()
        self.used += 1
        return next(self._it)

    def state(self) -> dict[str, int]:
        return {"passes": self.passes, "used": self.used}

    def load(self, state: Mapping[str, int]) -> None:
        self.passes, self.used, self._it = int(state["passes"]), int(state["used"]), None


def split_support_query(dataset: Dataset, ratio: float, seed: int) -> tuple[Dataset, Dataset]:
    """Split once, deterministically by ``seed``: (support, query) with
    round(ratio * n) (at least 1) query examples."""
    n = len(dataset)
    nq = max(1, int(round(ratio * n)))
    if nq >= n:
        raise ValueError(f"query_ratio={ratio} leaves no support examples out of {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, sorted(perm[nq:])), Subset(dataset, sorted(perm[:nq]))


class TrainBatches:
    """One step's ``(inputs, targets)`` (and query batch) from ``data``'s training split,
    on the policy's device.

    Part ``i`` is split by ``seed + i`` and streamed with key ``i`` (its query part with
    key ``QUERY_KEY + i``).  ``query_sets`` is ``{key: query Dataset}``, or None without a
    query split; ``steps_per_pass`` is the number of batches of the largest support part.
    """

    def __init__(self, data: MTLData, batch_size: int, seed: int, query_ratio: float,
                 policy: DevicePolicy, num_workers: int = 0) -> None:
        self.layout, self.policy = data.layout, policy
        support: dict[str, Dataset] = {}
        query: dict[str, Dataset] = {}
        for i, (key, ds) in enumerate(data.parts("train").items()):
            support[key], query[key] = (split_support_query(ds, query_ratio, seed + i)
                                        if query_ratio > 0 else (ds, None))
        self.streams = {k: Stream(ds, batch_size, seed, i, num_workers)
                        for i, (k, ds) in enumerate(support.items())}
        self.query_sets = query if query_ratio > 0 else None
        self.qstreams = {k: Stream(ds, batch_size, seed, QUERY_KEY + i, num_workers)
                         for i, (k, ds) in enumerate(query.items())} if query_ratio > 0 else {}
        self.steps_per_pass = max(s.batches_per_pass for s in self.streams.values())

    def draw(self) -> tuple[Any, Any]:
        """The next ``(inputs, targets)`` of the support streams."""
        return self._draw(self.streams)

    def draw_query(self) -> tuple[Any, Any] | None:
        """The next query batch, or None without a query split."""
        return self._draw(self.qstreams) if self.query_sets is not None else None

    def _draw(self, streams: Mapping[str, Stream]) -> tuple[Any, Any]:
        x, y = self.layout.join({k: next(s) for k, s in streams.items()})
        return self.policy.inputs(x), self.policy.targets(y)

    def state(self) -> dict[str, Any]:
        """The streams' positions (``streams``, ``qstreams``) for a checkpoint."""
        return {"streams": {k: s.state() for k, s in self.streams.items()},
                "qstreams": ({k: s.state() for k, s in self.qstreams.items()}
                             if self.query_sets is not None else None)}

    def load(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state`'s positions."""
        for k, s in state["streams"].items():
            self.streams[k].load(s)
        for k, s in (state["qstreams"] or {}).items():
            self.qstreams[k].load(s)
