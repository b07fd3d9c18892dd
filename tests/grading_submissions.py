"""Generated submissions for the grading tests and the grading benchmark.

A submission starts from the learner version in notebooks/ (what students receive) and replaces
the bodies of solution cells (by grade_id), or starts from the instructor's solution (fully
correct). Helpers here only build notebooks; tests/test_grading.py grades them with nbgrader.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent


def released(assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "notebooks" / assignment / f"{assignment}.ipynb", as_version=4)


def solution_sources(assignment: str) -> dict[str, str]:
    """{grade_id: solution cell source with the markers removed} from solutions/."""
    nb = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    out = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            out[meta["grade_id"]] = re.sub(r"^\s*### (BEGIN|END) SOLUTION\s*\n", "", cell.source, flags=re.M)
    return out


def correct(assignment: str) -> nbformat.NotebookNode:
    return fill(released(assignment), solution_sources(assignment))


def fill(nb: nbformat.NotebookNode, sources: dict[str, str]) -> nbformat.NotebookNode:
    """A copy of nb with the solution cells named in `sources` replaced."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in sources and cell.metadata["nbgrader"].get("solution"):
            cell.source = sources[gid]
    return nb


def partly(assignment: str, keep: list[str]) -> nbformat.NotebookNode:
    """Only the solution cells in `keep` are filled in; the rest stay as released."""
    sols = solution_sources(assignment)
    return fill(released(assignment), {k: v for k, v in sols.items() if k in keep})


def cell_index(nb: nbformat.NotebookNode, grade_id: str) -> int:
    for i, cell in enumerate(nb.cells):
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return i
    raise KeyError(grade_id)


def insert_after(nb: nbformat.NotebookNode, grade_id: str, source: str) -> nbformat.NotebookNode:
    """Add an ordinary (learner) code cell after the cell `grade_id`."""
    nb = copy.deepcopy(nb)
    nb.cells.insert(cell_index(nb, grade_id) + 1, nbformat.v4.new_code_cell(source))
    return nb


def drop_cells_using(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """Remove ungraded demo cells that call `name` (a learner may delete them)."""
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id")
                or c.cell_type != "code" or f"{name}(" not in c.source
                or f"def {name}" in c.source]
    return nb


def write(nb: nbformat.NotebookNode, submitted: Path, student: str, assignment: str) -> Path:
    path = submitted / student / assignment / f"{assignment}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def course_submissions(submitted: Path, n: int, assignments: list[str]) -> list[tuple[str, str, str]]:
    """n generated submissions spread over the course: correct, blank and half-done, in turn.

    Returns [(student, assignment, kind)]; used by benchmarks/bench_grading.py.
    """
    made = []
    kinds = ["correct", "blank", "half"]
    for i in range(n):
        a = assignments[i % len(assignments)]
        kind = kinds[(i // len(assignments)) % len(kinds)]
        if kind == "correct":
            nb = correct(a)
        elif kind == "blank":
            nb = released(a)
        else:
            ids = list(solution_sources(a))
            nb = partly(a, ids[: len(ids) // 2])
        student = f"student{i:03d}"
        write(nb, submitted, student, a)
        made.append((student, a, kind))
    return made
