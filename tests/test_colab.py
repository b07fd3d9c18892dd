"""The Colab setup cell (first cell of every notebook), tested by simulating Colab.

Colab itself is not reachable from a test, so the cell is really executed in a fresh Python
process that looks like Colab from the inside:

* `google.colab` is importable and already imported (a fake package on PYTHONPATH);
* the interpreter is a fresh virtual environment that sees torch, numpy and ipykernel as
  pre-installed packages (like Colab's), but does not have this course installed;
* `BACKPROP_REPO` points at a local git repository (a clone of this repository's HEAD), so the
  cell's `git clone` works offline.

The test asserts that the cell clones the repo, installs the `checks` package with
`pip install --no-deps -e` into that environment only (torch/numpy/ipykernel untouched), that
`import checks` then works in the same kernel and after a restart, that re-running the cell
is harmless, and that outside Colab the cell does nothing at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
LEARNER = sorted(p for p in (ROOT / "notebooks").glob("*/*.ipynb") if ".ipynb_checkpoints" not in p.parts)
PRESERVED = ("torch", "numpy", "ipykernel")

DRIVER = r'''
import importlib, json, os, sys
colab = os.environ.get("FAKE_COLAB") == "1"
if colab:
    import google.colab  # Colab's kernel has imported this before any user cell runs
before = {m: sys.modules[m].__file__ for m in ("numpy",) if m in sys.modules}
cell = open(sys.argv[1]).read()
exec(compile(cell, "<colab setup cell>", "exec"), {"__name__": "__main__"})
result = {"cwd_entries": sorted(os.listdir(os.getcwd()))}
if os.environ.get("IMPORT_CHECKS") != "1":
    print("RESULT " + json.dumps(result))
    sys.exit(0)
try:
    import checks
    result["checks"] = checks.__file__
    topic = os.environ.get("TOPIC_MODULE")
    if topic:
        result["topic"] = importlib.import_module("checks." + topic).__file__
except ImportError as exc:
    result["checks"] = None
    result["error"] = repr(exc)
for name in ("torch", "numpy", "ipykernel"):
    result[name] = importlib.import_module(name).__file__
print("RESULT " + json.dumps(result))
'''

AFTER_RESTART = r'''
import importlib.util, json
print("RESULT " + json.dumps({"checks": importlib.util.find_spec("checks").origin}))
'''


def _first_cell(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    cell = nb.cells[0]
    assert cell.cell_type == "code" and "google.colab" in cell.source, \
        f"{path.name}: the first cell must be the Colab setup cell"
    return cell.source


def _topic(path: Path) -> str | None:
    text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    m = re.search(r"^from checks import (\w+)", text, re.M)
    return m.group(1) if m else None


def _run(python: Path | str, code: str, cwd: Path, env: dict, *args: str) -> dict:
    script = cwd.parent / f"driver_{hashlib.sha1(code.encode()).hexdigest()[:8]}.py"
    script.write_text(code)
    proc = subprocess.run([str(python), str(script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, \
        f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, proc.stdout[-3000:]
    out = json.loads(line[-1][len("RESULT "):])
    out["stdout"], out["stderr"] = proc.stdout, proc.stderr
    return out


def _base_env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV", "JUPYTER", "BACKPROP_"))}
    env.update(HOME=str(tmp / "home"), PYTHONNOUSERSITE="1", MPLBACKEND="Agg",
               GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1")
    (tmp / "home").mkdir(exist_ok=True)
    return env


@pytest.fixture(scope="module")
def local_repo(tmp_path_factory) -> str:
    """A clone of this repository's HEAD, standing in for GitHub (file:// so --depth works)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: cannot build a local stand-in for the GitHub repo")
    dest = tmp_path_factory.mktemp("github") / "backprop-from-scratch.git"
    subprocess.run(["git", "clone", "-q", "--bare", "--no-hardlinks", str(ROOT), str(dest)],
                   check=True, capture_output=True, timeout=120)
    return dest.as_uri()


@pytest.fixture(scope="module")
def fake_colab(tmp_path_factory) -> dict:
    """A fresh venv that sees this interpreter's packages (torch, numpy, ...) as 'pre-installed'
    and a fake `google.colab` package. Returns paths and the pre-installed packages' state."""
    tmp = tmp_path_factory.mktemp("colab")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    own_site = Path(subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    # Colab's pre-installed packages: this interpreter's site-packages, appended as a plain path
    # (its .pth files, including this course's own editable install, are NOT processed).
    host_site = sysconfig.get_paths()["purelib"]
    (own_site / "colab_preinstalled.pth").write_text(host_site + "\n")
    fake = tmp / "fake_colab" / "google" / "colab"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("")
    (fake / "__init__.py").write_text('"""Stand-in for Colab\'s google.colab module."""\n')
    return {"python": python, "own_site": own_site, "host_site": Path(host_site),
            "fake_path": str(tmp / "fake_colab"), "tmp": tmp}


def _preinstalled_state(site: Path) -> dict[str, float]:
    """mtimes of torch/numpy/ipykernel (package dirs and dist-info) and this course's install."""
    state = {}
    for entry in site.iterdir():
        low = entry.name.lower()
        if low.startswith(PRESERVED) or "backprop" in low:
            state[entry.name] = entry.stat().st_mtime
    return state


def _cells_by_source() -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = {}
    for p in LEARNER:
        groups.setdefault(_first_cell(p), []).append(p)
    return groups


def test_there_are_learner_notebooks():
    assert LEARNER, "no learner notebooks in notebooks/"


def test_first_cell_is_the_shared_setup_cell():
    """Every notebook carries the same, current setup cell (scripts/nbauthor.py COLAB_SETUP)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from nbauthor import COLAB_SETUP

    stale = [p.parent.name for p in LEARNER if _first_cell(p) != COLAB_SETUP]
    assert not stale, f"first cell differs from nbauthor.COLAB_SETUP in: {stale}"
    assert "--no-deps" in COLAB_SETUP, "pip must not touch Colab's torch/numpy/ipykernel"


_NO_OP_DONE: set[str] = set()


@pytest.mark.parametrize("path", LEARNER, ids=lambda p: p.parent.name)
def test_setup_cell_is_a_no_op_outside_colab(path, tmp_path):
    if _first_cell(path) in _NO_OP_DONE:  # the same text already ran: same result
        return
    cwd = tmp_path / "work"
    cwd.mkdir()
    cell = tmp_path / "cell.py"
    cell.write_text(_first_cell(path))
    env = _base_env(tmp_path)
    env["BACKPROP_REPO"] = str(tmp_path / "does-not-exist")  # would fail loudly if used
    out = _run(sys.executable, DRIVER, cwd, env, str(cell))
    assert out["cwd_entries"] == [], f"the cell wrote {out['cwd_entries']} outside Colab"
    assert out["stdout"].strip().startswith("RESULT") and not out["stderr"].strip(), out["stderr"]
    _NO_OP_DONE.add(_first_cell(path))


def test_setup_cell_on_simulated_colab(fake_colab, local_repo):
    """Run each distinct first cell (all notebooks, deduplicated by text) as Colab would."""
    python, own_site, host_site = fake_colab["python"], fake_colab["own_site"], fake_colab["host_site"]
    host_before = _preinstalled_state(host_site)
    for n, (source, paths) in enumerate(_cells_by_source().items()):
        names = [p.parent.name for p in paths]
        content = fake_colab["tmp"] / f"content{n}"  # Colab's working directory, /content
        content.mkdir()
        cell = fake_colab["tmp"] / f"cell{n}.py"
        cell.write_text(source)
        env = _base_env(fake_colab["tmp"])
        env.update(FAKE_COLAB="1", IMPORT_CHECKS="1", PYTHONPATH=fake_colab["fake_path"], BACKPROP_REPO=local_repo,
                   TOPIC_MODULE=_topic(paths[0]) or "",
                   # Offline: no index, and build with the setuptools that is already present.
                   PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
        out = _run(python, DRIVER, content, env, str(cell))
        target = content / "backprop-from-scratch"
        assert (target / ".git").is_dir() and (target / "checks" / "__init__.py").is_file(), \
            f"{names}: the cell did not clone the repo into {target}"
        assert out["checks"], f"{names}: import checks failed after the cell: {out.get('error')}"
        assert Path(out["checks"]).is_relative_to(target), f"{names}: checks from {out['checks']}"
        if out.get("topic") is not None:
            assert Path(out["topic"]).is_relative_to(target)
        for name in PRESERVED:  # still the pre-installed ones, not re-installed into the venv
            assert Path(out[name]).is_relative_to(host_site), f"{name} loaded from {out[name]}"
        installed = sorted(e.name for e in own_site.iterdir() if e.name != "colab_preinstalled.pth")
        assert not [e for e in installed if e.lower().startswith(PRESERVED)], installed
        assert any(e.startswith("backprop_from_scratch") and e.endswith(".dist-info") for e in installed), \
            f"{names}: the package was not pip-installed into the Colab environment: {installed}"
        # A kernel restart (new process, no sys.path trick) still finds the editable install.
        again = _run(python, AFTER_RESTART, content, dict(env, PYTHONPATH="", IMPORT_CHECKS="0"))
        assert Path(again["checks"]).is_relative_to(target), again["checks"]
        # Re-running the setup cell (learners do) is harmless: no second clone, no error.
        rerun = _run(python, DRIVER, content, dict(env, IMPORT_CHECKS="0"), str(cell))
        assert rerun["cwd_entries"] == ["backprop-from-scratch"], rerun["cwd_entries"]
        # Uninstall before the next distinct cell, so each one is tested from scratch.
        for e in own_site.iterdir():
            if "backprop" in e.name.lower():
                shutil.rmtree(e) if e.is_dir() else e.unlink()
    assert _preinstalled_state(host_site) == host_before, \
        "the simulated Colab install modified the host's torch/numpy/ipykernel or course install"


def test_colab_badge_urls_point_at_learner_notebooks():
    """The Colab badge URL of each notebook (README) names a file that exists in notebooks/."""
    readme = (ROOT / "README.md").read_text()
    urls = re.findall(r"https://colab\.research\.google\.com/github/[^/]+/[^/]+/blob/main/([^)\s\"]+)", readme)
    if not urls:
        pytest.skip("README has no Colab badges yet")
    missing = [u for u in urls if not (ROOT / u).is_file()]
    assert not missing, f"Colab badges point at missing notebooks: {missing}"
