"""Notebook invariants, for every assignment in solutions/ and notebooks/ (DESIGN.md §4, §6).

Each notebook is executed once per run (see the `executed_notebooks` fixture) and the
results are shared by these tests.
"""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import nbformat
import pytest
from nbgrader.validator import Validator
from notebook_runner import ROOT, notebook_paths

SOLUTIONS = notebook_paths("solutions")
LEARNER = notebook_paths("notebooks")


def _id(p: Path) -> str:
    return p.parent.name


def _errors(nb):
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                yield i, cell, out


def _graded_cells(nb):
    return [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")]


def test_every_assignment_is_released():
    assert SOLUTIONS, "no solution notebooks found"
    assert [_id(p) for p in SOLUTIONS] == [_id(p) for p in LEARNER]


@pytest.mark.notebooks
@pytest.mark.parametrize("path", SOLUTIONS, ids=_id)
def test_solution_executes_top_to_bottom(path, executed_notebooks):
    nb = executed_notebooks[path]
    if isinstance(nb, Exception):
        raise nb
    errors = [f"cell {i}: {out['ename']}: {out['evalue'][:300]}" for i, _, out in _errors(nb)]
    assert not errors, "\n".join(errors)


@pytest.mark.notebooks
@pytest.mark.parametrize("path", SOLUTIONS, ids=_id)
def test_solution_passes_nbgrader_validate(path, executed_notebooks):
    """nbgrader's own validator logic, on the shared execution: no graded cell fails."""
    nb = executed_notebooks[path]
    assert not isinstance(nb, Exception), nb
    failed = Validator()._get_failed_cells(nb)
    assert not failed, [c.metadata.nbgrader.grade_id for c in failed]
    stderr = [c.metadata.nbgrader.grade_id for c in _graded_cells(nb)
              if any(o.get("name") == "stderr" for o in c.get("outputs", []))]
    assert not stderr, f"graded cells wrote to stderr: {stderr}"


@pytest.mark.notebooks
@pytest.mark.parametrize("path", LEARNER, ids=_id)
def test_learner_version_fails_only_with_not_implemented(path, executed_notebooks):
    nb = executed_notebooks[path]
    assert not isinstance(nb, Exception), nb
    bad = []
    for i, _cell, out in _errors(nb):
        ok = out["ename"] == "NotImplementedError" or (
            out["ename"] == "CheckFailed" and "not implemented yet" in out["evalue"])
        if not ok:
            bad.append(f"cell {i}: {out['ename']}: {out['evalue'][:300]}")
    assert not bad, "\n".join(bad)


@pytest.mark.notebooks
@pytest.mark.parametrize("path", LEARNER, ids=_id)
def test_learner_version_fails_every_graded_cell(path, executed_notebooks):
    """The equivalent of `nbgrader validate --invert`: every graded cell fails as released."""
    nb = executed_notebooks[path]
    assert not isinstance(nb, Exception), nb
    graded = _graded_cells(nb)
    assert graded, "no graded cells"
    passed = Validator()._get_passed_cells(nb)
    assert not passed, [c.metadata.nbgrader.grade_id for c in passed]


@pytest.mark.parametrize("path", SOLUTIONS + LEARNER, ids=lambda p: f"{p.parent.parent.name}/{_id(p)}")
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"cells with outputs or execution counts: {dirty} (clear them)"


@pytest.mark.parametrize("path", SOLUTIONS, ids=_id)
def test_graded_cells_have_points_and_solutions_have_markers(path):
    nb = nbformat.read(path, as_version=4)
    graded = _graded_cells(nb)
    assert graded, "a notebook without graded cells cannot be autograded"
    assert all(c.metadata.nbgrader.get("points", 0) > 0 for c in graded)
    solutions = [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("solution")]
    assert solutions
    for c in solutions:
        if c.cell_type == "code":
            assert "### BEGIN SOLUTION" in c.source and "### END SOLUTION" in c.source, c.source[:80]
    assert nb.cells[0].cell_type == "code" and "google.colab" in nb.cells[0].source, \
        "the first cell must be the Colab setup cell"


@pytest.mark.parametrize("path", LEARNER, ids=_id)
def test_no_solution_text_in_learner_notebooks(path):
    text = path.read_text()
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    solution_nb = nbformat.read(ROOT / "solutions" / path.parent.name / path.name, as_version=4)
    learner_text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
    for cell in solution_nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution") and cell.cell_type == "code":
            body = cell.source.split("### BEGIN SOLUTION", 1)[1].split("### END SOLUTION", 1)[0]
            lines = [ln.strip() for ln in body.splitlines() if len(ln.strip()) > 12]
            leaked = [ln for ln in lines if ln in learner_text]
            assert not leaked, f"solution lines leaked into {path}: {leaked[:3]}"


def test_notebooks_folder_equals_a_fresh_release(fresh_release):
    """notebooks/ is generated: it must equal what `make release` produces now (diff -r)."""

    def diff(a: Path, b: Path) -> list[str]:
        cmp = filecmp.dircmp(a, b, ignore=[".ipynb_checkpoints", "__pycache__"])
        out = [f"only in {a}: {x}" for x in cmp.left_only] + [f"only in {b}: {x}" for x in cmp.right_only]
        for name in cmp.diff_files:
            if json.loads((a / name).read_text()) != json.loads((b / name).read_text()):
                out.append(f"differs: {a / name}")
        for sub in cmp.common_dirs:
            out += diff(a / sub, b / sub)
        return out

    problems = diff(ROOT / "notebooks", fresh_release)
    assert not problems, "notebooks/ is out of date; run `make release`:\n" + "\n".join(problems)
