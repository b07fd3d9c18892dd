"""environment.yml (Binder and conda users) is well formed and matches pyproject.toml.

conda is not reachable from the test machines, so the file is checked statically: its
structure, a CPU-only torch, `pip: -e .` to install this repository, and no drift from
pyproject.toml's runtime dependencies (same packages, same minimum versions).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = ROOT / "environment.yml"

# PyPI name -> conda-forge name, where they differ.
CONDA_NAME = {"torch": "pytorch-cpu"}
# Conda packages that are not runtime dependencies of the package but belong in the env.
TOOLING = {"python", "pip"}
CONDA_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<spec>(?:[<>=!~].*)?)$")


@pytest.fixture(scope="module")
def env() -> dict:
    data = yaml.safe_load(ENV_FILE.read_text())
    assert isinstance(data, dict), "environment.yml must be a mapping"
    return data


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _conda_deps(env: dict) -> dict[str, str]:
    deps = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            m = CONDA_SPEC.match(dep.strip())
            assert m, f"not a conda match spec: {dep!r}"
            name = m["name"].lower()
            assert name not in deps, f"{name} listed twice"
            deps[name] = m["spec"].replace(" ", "")
    return deps


def _pip_section(env: dict) -> list[str]:
    sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "exactly one `pip:` section expected"
    return sections[0]


def _conda_specifier(spec: str) -> SpecifierSet:
    """A conda version constraint (`>=1.24`, `=3.11`, `>=2,<3`) as a PEP 440 SpecifierSet."""
    parts = []
    for part in filter(None, spec.split(",")):
        if re.fullmatch(r"=[^=].*", part):  # conda "=3.11" means 3.11.*
            parts.append(f"=={part[1:].rstrip('.*')}.*")
        else:
            parts.append(part)
    return SpecifierSet(",".join(parts))


def test_structure(env):
    assert set(env) <= {"name", "channels", "dependencies"}, set(env)
    assert env.get("name") == "backprop-from-scratch"
    channels = env["channels"]
    assert channels[0] == "conda-forge", "conda-forge must be the first (highest priority) channel"
    assert "defaults" not in channels and "anaconda" not in channels, \
        "mixing the defaults channel with conda-forge breaks solves"
    assert isinstance(env["dependencies"], list) and env["dependencies"]


def test_python_311_and_pip(env):
    deps = _conda_deps(env)
    assert deps.get("python") in {"=3.11", "==3.11", "=3.11.*", "3.11"}, deps.get("python")
    assert "pip" in deps, "pip is needed for the `pip: -e .` section"


def test_torch_is_cpu_only(env):
    deps = _conda_deps(env)
    names = set(deps)
    cpu_forge = "pytorch-cpu" in names
    cpu_channel = {"pytorch", "cpuonly"} <= names and "pytorch" in env["channels"]
    assert cpu_forge or cpu_channel, "torch must be the CPU build (pytorch-cpu, or pytorch + cpuonly)"
    assert not names & {"pytorch-gpu", "pytorch-cuda", "cudatoolkit", "cuda-version"}, \
        "no CUDA packages: Binder has no GPU and a CUDA build does not fit its memory"


def test_installs_this_repository_with_pip(env):
    pip = [line.strip() for line in _pip_section(env)]
    assert pip == ["-e ."], f"the pip section must install this repo and nothing else: {pip}"
    assert (ROOT / "pyproject.toml").is_file()


def test_same_runtime_dependencies_as_pyproject(env, project):
    """No drift: every [project].dependencies entry is in environment.yml with the same bounds."""
    conda = _conda_deps(env)
    expected = {}
    for line in project["dependencies"]:
        req = Requirement(line)
        assert not req.marker, f"markers are not mirrored in environment.yml: {line}"
        expected[CONDA_NAME.get(req.name.lower(), req.name.lower())] = req.specifier
    missing = sorted(set(expected) - set(conda))
    assert not missing, f"runtime dependencies missing from environment.yml: {missing}"
    for name, spec in expected.items():
        assert _conda_specifier(conda[name]) == spec, \
            f"{name}: environment.yml says {conda[name]!r}, pyproject.toml says {str(spec)!r}"


def test_nothing_else_than_runtime_tooling_and_grading(env, project):
    conda = _conda_deps(env)
    runtime = {CONDA_NAME.get(Requirement(r).name.lower(), Requirement(r).name.lower())
               for r in project["dependencies"]}
    grading = {Requirement(r).name.lower(): Requirement(r).specifier
               for r in project["optional-dependencies"]["grading"]}
    extra = set(conda) - runtime - TOOLING - set(grading) - {"cpuonly", "pytorch"}
    assert not extra, f"environment.yml lists packages pyproject.toml does not know: {sorted(extra)}"
    for name, spec in grading.items():  # instructors on Binder can grade: same nbgrader bound
        assert name in conda, f"{name} (the [grading] extra) missing from environment.yml"
        assert _conda_specifier(conda[name]) == spec, (name, conda[name], str(spec))


def test_binder_reads_this_file():
    """repo2docker only looks in binder/ or .binder/ when such a folder exists."""
    for folder in ("binder", ".binder"):
        assert not (ROOT / folder).exists() or (ROOT / folder / "environment.yml").exists(), \
            f"{folder}/ would make Binder ignore the root environment.yml"
    # postBuild is only needed when the env cannot do the job; if present it must be executable.
    post = ROOT / "postBuild"
    assert not post.exists() or post.stat().st_mode & 0o111


def test_conda_specifier_translation():
    assert _conda_specifier(">=1.24") == SpecifierSet(">=1.24")
    assert _conda_specifier("=3.11") == SpecifierSet("==3.11.*")
    assert _conda_specifier(">=2.1,<3") == SpecifierSet(">=2.1,<3")
