"""Shipped results: a completed run folder copied to results/ with its provenance."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mtlkit import shipped
from mtlkit.results import make_records, write_records


def _run_folder(tmp_path, done: bool = True):
    run = tmp_path / "runs" / "50_x"
    (run / "figures").mkdir(parents=True)
    rows = pd.DataFrame({"task": ["a"], "metric": ["acc"], "value": [0.5], "split": ["test"],
                         "epoch": [1]})
    write_records(make_records(rows, run_id="EW-s0", dataset="d", architecture="HPS",
                               method="EW", hparams={}, seed=0, device="cpu", wall_time=1.0,
                               chosen_epoch=1), run / "records.csv", append=False)
    (run / "figures" / "f.png").write_bytes(b"\x89PNG fake")
    (run / "metrics.json").write_text(json.dumps({"acc": 0.5}))
    (run / "checkpoint.pt").write_bytes(b"never shipped")
    (run / "50_x.ipynb").write_text("{}")
    if done:
        (run / "_done.json").write_text(json.dumps({"notebook": "50_x.ipynb", "wall_s": 12.0,
                                                    "parameters": {"PROFILE": "paper-cpu",
                                                                   "OUT_DIR": "/x"}}))
    return run


def test_ship_and_load_round_trip(tmp_path):
    run = _run_folder(tmp_path)
    root = tmp_path / "results"
    folder = shipped.ship(run, "50_x", "make results", root=root)
    got = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert got == ["PROVENANCE.json", "README.md", "figures/f.png", "metrics.json",
                   "records.csv"]
    s = shipped.load("50_x", root=root)
    assert s is not None and s.records["value"].tolist() == [0.5]
    assert s.metrics() == {"acc": 0.5}
    prov = s.provenance
    assert prov["command"] == "make results" and prov["parameters"]["PROFILE"] == "paper-cpu"
    assert prov["machine"]["cores"] >= 1 and prov["date"].endswith("Z")
    assert s.label().startswith("precomputed: `make results`")
    readme = (folder / "README.md").read_text()
    assert "make results" in readme and "OUT_DIR" not in readme
    assert shipped.available(root) == ["50_x"]


def test_ship_replaces_the_folder_as_a_whole(tmp_path):
    root = tmp_path / "results"
    run = _run_folder(tmp_path)
    shipped.ship(run, "50_x", "one", root=root)
    (run / "figures" / "f.png").unlink()
    shipped.ship(run, "50_x", "two", root=root)
    assert not (root / "50_x" / "figures" / "f.png").exists()
    assert shipped.load("50_x", root=root).provenance["command"] == "two"
    assert sorted(p.name for p in root.iterdir()) == ["50_x"]


def test_ship_refuses_an_unfinished_run_and_load_of_nothing_is_none(tmp_path):
    run = _run_folder(tmp_path, done=False)
    with pytest.raises(ValueError, match="no completed run"):
        shipped.ship(run, "50_x", "cmd", root=tmp_path / "results")
    assert shipped.load("50_x", root=tmp_path / "results") is None
    assert shipped.main([str(run), "50_x", "--command", "c", "--root",
                         str(tmp_path / "r")]) == 2


def test_ship_refuses_large_files(tmp_path, monkeypatch):
    run = _run_folder(tmp_path)
    monkeypatch.setattr(shipped, "MAX_FILE_BYTES", 4)
    with pytest.raises(ValueError, match="too large"):
        shipped.ship(run, "50_x", "cmd", root=tmp_path / "results")


def test_ship_all_ships_every_completed_run(tmp_path):
    run = _run_folder(tmp_path)
    (run.parent / "51_y").mkdir()  # not completed: skipped
    root = tmp_path / "results"
    assert shipped.main([str(run.parent), "--all", "--command", "make results", "--root",
                         str(root)]) == 0
    assert shipped.available(root) == ["50_x"]
    assert shipped.main([str(tmp_path / "nothing"), "--all", "--command", "c", "--root",
                         str(root)]) == 2
