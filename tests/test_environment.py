"""environment.yml stays a thin wrapper around pyproject.toml; data pins carry hashes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 (environment.yml pins 3.11)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def env() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _pins(pyproject: dict) -> dict[str, Requirement]:
    reqs = list(pyproject["project"]["dependencies"])
    for extra in pyproject["project"].get("optional-dependencies", {}).values():
        reqs += extra
    return {canonicalize_name(Requirement(r).name): Requirement(r) for r in reqs}


def _split(env: dict) -> tuple[list[str], list[str]]:
    conda, pip = [], []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            assert set(dep) == {"pip"}, f"unexpected section {dep} in environment.yml"
            pip += dep["pip"]
        else:
            conda.append(str(dep))
    return conda, pip


def test_pyproject_pins_every_dependency(pyproject):
    for name, req in _pins(pyproject).items():
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{name} is not pinned with =="


def test_environment_only_wraps_pyproject(env):
    conda, pip = _split(env)
    names = [re.split(r"[=<>! ]", c)[0] for c in conda]
    assert sorted(names) == ["pip", "python"], (
        f"environment.yml lists conda packages {names}: add dependencies to pyproject.toml")
    pip = [p.replace('"', "").replace("'", "").replace(" ", "") for p in pip]
    assert pip == ["-e.[dev,data]"], (
        f"environment.yml pip section {pip} should be exactly '-e .[dev,data]' "
        "(what scripts/setup.sh installs)")


def test_environment_python_satisfies_requires_python(env, pyproject):
    conda, _ = _split(env)
    (python,) = [c for c in conda if c.startswith("python")]
    m = re.fullmatch(r"python\s*=?=?\s*(\d+\.\d+)(\.\*)?", python)
    assert m, f"pin python like 'python=3.11' in environment.yml, got {python!r}"
    requires = SpecifierSet(pyproject["project"]["requires-python"])
    assert Version(m.group(1)) in requires, (
        f"environment.yml {python} contradicts requires-python {requires}")


def test_environment_lists_no_package_that_drifts_from_pyproject(env, pyproject):
    """Any package spec in environment.yml (conda or pip) must match pyproject's pin."""
    pins = _pins(pyproject)
    conda, pip = _split(env)
    for spec in conda + pip:
        if spec.startswith("-") or spec.split("=")[0] in {"python", "pip"}:
            continue
        req = Requirement(spec.replace("=", "==", 1) if re.search(r"[^=<>!]=[^=]", spec)
                          else spec)
        pin = pins.get(canonicalize_name(req.name))
        assert pin is not None, f"{req.name} is in environment.yml but not in pyproject.toml"
        assert str(req.specifier) == str(pin.specifier), (
            f"{req.name}: environment.yml {req.specifier} != pyproject {pin.specifier}")


def test_data_requirements_are_pinned_with_hashes():
    text = (ROOT / "requirements-data.txt").read_text()
    logical = re.sub(r"\\\n", " ", text).splitlines()
    entries = [line.split("#")[0].strip() for line in logical]
    entries = [e for e in entries if e]
    assert entries, "requirements-data.txt lists nothing"
    for entry in entries:
        req, *options = entry.split()
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+\-!]+", req), f"{req} is not pinned"
        hashes = [o for o in options if o.startswith("--hash=")]
        assert hashes and all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", h) for h in hashes), (
            f"{req} needs --hash=sha256:<64 hex> (pip --require-hashes)")
        assert len(hashes) == len(options), f"{req}: unexpected options {options}"
