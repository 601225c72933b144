"""mtlkit.utils: the one slug, JSON conversion and RNG state shared by the library and the
notebook helpers."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
import torch

from mtlkit import experiments, nb, nbrun
from mtlkit.utils import jsonable, rng_state, seed_everything, set_rng_state, slug

LABELS = ["EW", "RLW-dirichlet", "GradNorm(alpha: 0.5, optimizer: sgd)@param", "MGDA-UB",
          "(x)", "a  b", "_lead", "0.3", "1e-5", "cuda:0", "a+b", "[0, 1]", ""]


@pytest.mark.parametrize("text", LABELS)
def test_slug_writes_what_the_two_copies_it_replaced_wrote(text):
    """experiments._slug (run folders of a grid) and nbrun._slug (run labels), as they were
    (for ASCII text)."""
    assert slug(text) == re.sub(r"[^\w\-]+", "_", text).strip("_")
    assert slug(text, keep=".+-", strip=False) == re.sub(r"[^A-Za-z0-9_.+-]+", "_", text)


def test_run_labels_and_grid_folders_use_it():
    assert nbrun.run_label({"LR": 0.3, "SEEDS": [0, 1]}) == "LR=0.3,SEEDS=0-1"
    assert nbrun.value_text("cuda:0") == "cuda_0"
    assert experiments.parse_method("MGDA(x: 0.5)").label == "MGDA(x: 0.5)"
    assert slug("MGDA(x: 0.5)") == "MGDA_x_0_5"


def test_the_notebook_helpers_reexport_the_library_functions():
    assert nb.jsonable is jsonable and nb.seed_everything is seed_everything


def test_jsonable_and_rng_state_round_trip():
    assert jsonable({"a": torch.tensor([1.0, float("nan")]), 2: (np.float64(np.inf),)}) == {
        "a": [1.0, "nan"], "2": ["inf"]}
    seed_everything(3)
    state = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first
