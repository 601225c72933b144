"""mtlkit.registry: one lookup style for strategies, architectures (and datasets)."""

from __future__ import annotations

import pytest

import mtlkit.arch as A
from mtlkit import weighting as W
from mtlkit.registry import Registry, normalize


def make() -> Registry:
    reg: Registry = Registry("widget", argument="knob")

    def small(size: int = 1, colour: str = "red") -> tuple:
        return size, colour

    def anything(**kw) -> dict:
        return kw

    reg.add("Small-Widget", small)
    reg.add("any", anything)
    return reg


def test_lookup_ignores_case_hyphens_underscores_and_spaces():
    reg = make()
    for spelling in ("Small-Widget", "small_widget", "SMALLWIDGET", "small widget"):
        assert reg.key(spelling) == "Small-Widget"
        assert spelling in reg
    assert normalize("Nash-MTL") == normalize("nash_mtl") == "nashmtl"
    assert "Small" not in reg and 3 not in reg


def test_unknown_name_lists_the_choices_sorted():
    msg = r"^unknown widget 'big'; choose one of: Small-Widget, any$"
    with pytest.raises(ValueError, match=msg):
        make().key("big")


def test_names_that_match_each_other_are_refused():
    reg = make()
    with pytest.raises(TypeError, match="two widget entries are called 'small_widget'"):
        reg.add("small_widget", lambda: None)
    reg.add("Small-Widget", reg["small-widget"])  # the same object again: a no-op
    assert len(reg) == 2 and list(reg) == ["Small-Widget", "any"]


def test_build_checks_keywords_unless_the_entry_takes_any():
    reg = make()
    assert reg.build("small widget", size=3) == (3, "red")
    with pytest.raises(ValueError, match="Small-Widget has no knob 'weight'; valid ones: "
                                         "size, colour"):
        reg.build("Small-Widget", weight=2)
    assert reg.build("ANY", weight=2) == {"weight": 2}


def test_load_runs_once_before_the_first_lookup_and_again_after_a_failure():
    calls = []

    def load() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ImportError("first try fails")
        reg.add("x", 1)

    reg: Registry = Registry("thing", load=load)
    with pytest.raises(ImportError):
        reg.names()
    assert reg.names() == ["x"] and reg["X"] == 1 and len(calls) == 2


def test_strategies_and_architectures_follow_the_same_rules():
    assert W.get("nash_mtl").name == "Nash-MTL" and W.get("db mtl").name == "DB-MTL"
    with pytest.raises(ValueError, match="unknown weighting strategy 'foo'; choose one of: "):
        W.get("foo")
    assert A.names() == ["CrossStitch", "HPS", "MMoE", "MTAN", "NDDR", "SharedPrivate"]
    assert A.ARCHITECTURES["shared_private"] is A.SharedPrivate
    with pytest.raises(ValueError, match="unknown architecture 'foo'; choose one of: CrossStitch"):
        A.get("foo")
    from torch import nn

    model = A.get("hps", encoder=nn.Linear(2, 3), heads={"a": nn.Linear(3, 1)})
    assert isinstance(model, A.HPS) and model.tasks == ("a",)
    with pytest.raises(ValueError, match="HPS has no argument 'encoders'"):
        A.get("HPS", encoders=nn.Linear(2, 3), heads={})
