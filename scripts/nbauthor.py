"""Helpers for writing the instructor notebooks in solutions/ from a Python script.

The .ipynb files in solutions/ are the source of truth (edit them in JupyterLab as usual);
these helpers only save typing when a notebook is first written:

    from nbauthor import md, code, solution, graded, colab_setup, write
    write("solutions/01_chain_rule/01_chain_rule.ipynb", [colab_setup(), md("# ..."), ...])

nbgrader metadata: `solution` cells hold ### BEGIN SOLUTION / ### END SOLUTION blocks; the
learner version replaces them by `raise NotImplementedError()`. `graded` cells are locked
test cells worth `points` (they call a check).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

REPO_URL = "https://github.com/backprop-from-scratch/backprop-from-scratch"


def _nbgrader(grade_id: str, *, solution: bool = False, grade: bool = False,
              locked: bool = False, points: float | None = None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def _src(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def md(text: str) -> nbformat.NotebookNode:
    """A markdown cell."""
    return new_markdown_cell(_src(text))


def code(text: str) -> nbformat.NotebookNode:
    """An ordinary code cell (demo, plot, experiment)."""
    return new_code_cell(_src(text))


def solution(text: str, grade_id: str) -> nbformat.NotebookNode:
    """An exercise cell: the solution goes between ### BEGIN SOLUTION and ### END SOLUTION."""
    return new_code_cell(_src(text), metadata=_nbgrader(grade_id, solution=True))


def graded(text: str, grade_id: str, points: float) -> nbformat.NotebookNode:
    """A locked, autograded test cell (it calls a check) worth `points`."""
    return new_code_cell(_src(text), metadata=_nbgrader(grade_id, grade=True, locked=True,
                                                        points=points))


COLAB_SETUP = f'''\
# Setup. On Google Colab this cell fetches the course and installs its `checks` package
# (without touching Colab's own torch, numpy or ipykernel). Anywhere else it does nothing.
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    repo = os.environ.get("BACKPROP_REPO", "{REPO_URL}")
    target = os.path.join(os.getcwd(), "backprop-from-scratch")
    if not os.path.isdir(target):
        subprocess.run(["git", "clone", "--depth", "1", repo, target], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", target],
                   check=True)
    sys.path.insert(0, target)'''


def colab_setup() -> nbformat.NotebookNode:
    """The first cell of every notebook: sets up on Colab only, a no-op elsewhere."""
    return new_code_cell(COLAB_SETUP, metadata=_nbgrader("colab_setup", locked=True))


def write(path: str | Path, cells: list) -> None:
    """Write a notebook with a python3 kernelspec and no outputs."""
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    })
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
