"""The grading pipeline end to end, on real nbgrader runs (scripts/grade.py).

One shared graded course (module fixture): generated submissions of 01_chain_rule — correct,
blank, partly correct, buggy, noisy on stderr, an infinite loop, a broken file and tamper
attempts — plus the instructor's solution of every other assignment found, graded in one run
with 2 workers. Each test then reads the scores, the CSVs, the feedback and the gradebook.
Rule for every tamper attempt: the score never exceeds what the honest code earns.
"""

from __future__ import annotations

import csv
import json
import sys
import textwrap
import zipfile
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import grade as grader  # noqa: E402
from grading_submissions import (  # noqa: E402
    ROOT,
    cell_index,
    correct,
    drop_cells_using,
    fill,
    insert_after,
    partly,
    released,
    solution_sources,
    write,
)

A = "01_chain_rule"
pytestmark = [pytest.mark.grading,
              pytest.mark.skipif(not (ROOT / "solutions" / A).is_dir(), reason=f"{A} not written yet")]
CELL_TIMEOUT = 30  # seconds per cell in these runs (the infinite loop costs this much once)

RAISE = "    raise NotImplementedError()\n"
BUGGY = {
    "central_difference": "def central_difference(f, x, h=1e-5):\n    return (f(x + h) - f(x)) / h\n",
    "sigmoid_prime": "def sigmoid_prime(x):\n    return sigmoid(x)\n",
    "tanh_prime": "def tanh_prime(x):\n    return 1.0 - np.tanh(x)\n",
    "relu_prime": "def relu_prime(x):\n    return (x >= 0).astype(np.float64)\n",
    "graph_backward": "def graph_backward(x, y, z):\n    return z, z, x * y\n",
    "neuron_backward": "def neuron_backward(w, x, b):\n    return x, w, 1.0\n",
}
FAKE_CHECKS = textwrap.dedent('''\
    class _Pass:
        def __getattr__(self, name):
            return lambda *args, **kwargs: "✓ passed"
    chain_rule = _Pass()
    def gradcheck(*args, **kwargs):
        return "✓"
    class CheckFailed(AssertionError):
        pass
''')


def points() -> dict[str, float]:
    """{exercise: points} from the released notebook (test_<exercise> cells)."""
    out = {}
    for cell in released(A).cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            out[meta["grade_id"].removeprefix("test_")] = float(meta["points"])
    return out


def honest(*exercises: str) -> float:
    return sum(points()[e] for e in exercises)


def _blank_except(*exercises: str) -> nbformat.NotebookNode:
    return partly(A, list(exercises))


def make_submissions(submitted: Path) -> dict[str, tuple[str, ...]]:
    """Write every generated submission; return {student: exercises its honest code solves}."""
    sols = solution_sources(A)
    expect: dict[str, tuple[str, ...]] = {}

    def add(student: str, nb: nbformat.NotebookNode, solves: tuple[str, ...]) -> Path:
        expect[student] = solves
        return write(nb, submitted, student, A)

    everything = tuple(points())
    add("correct", correct(A), everything)
    add("blank", released(A), ())
    add("partial", _blank_except("sigmoid_prime", "relu_prime"), ("sigmoid_prime", "relu_prime"))
    add("buggy", fill(released(A), BUGGY), ())

    noisy = {k: v for k, v in sols.items()}
    noisy["sigmoid_prime"] = ("import sys, warnings\n" + noisy["sigmoid_prime"].replace(
        '"""\n', '"""\n    print("debugging sigmoid_prime", x.shape, file=sys.stderr)\n'
        '    warnings.warn("a warning from the learner")\n', 1))
    nb = insert_after(fill(released(A), noisy), "sigmoid_prime",
                      'import sys\nprint("stderr from an exercise cell", file=sys.stderr)')
    add("noisy", nb, everything)

    looping = dict(sols, tanh_prime="def tanh_prime(x):\n    while True:\n        pass\n")
    add("looping", drop_cells_using(fill(released(A), looping), "tanh_prime"),
        tuple(e for e in everything if e != "tanh_prime"))

    # A checks.py and a checks/ package beside the notebook (stripped before grading).
    add("shadow_files", _blank_except(), ())
    for rel in ("checks.py", "checks/__init__.py", "checks/chain_rule.py"):
        path = submitted / "shadow_files" / A / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(FAKE_CHECKS if rel != "checks/chain_rule.py" else FAKE_CHECKS)

    # The notebook writes a fake checks package into its folder at run time and re-imports it.
    shadow = textwrap.dedent(f'''\
        import os, sys
        os.makedirs("checks", exist_ok=True)
        with open("checks/__init__.py", "w") as fh:
            fh.write({FAKE_CHECKS!r})
        for name in [m for m in sys.modules if m == "checks" or m.startswith("checks.")]:
            del sys.modules[name]
        sys.path.insert(0, os.getcwd())
        from checks import chain_rule as check
    ''')
    add("shadow_runtime", insert_after(_blank_except("sigmoid_prime"), "central_difference", shadow),
        ("sigmoid_prime",))

    # Monkeypatching the checks: module functions, engine internals, and the `check` name.
    patch_checks = textwrap.dedent('''\
        import checks.chain_rule as c
        import checks.engine.core as core
        for name in ["central_difference", "sigmoid_prime", "tanh_prime", "relu_prime",
                     "graph_backward", "neuron_backward"]:
            setattr(c, name, lambda *args, **kwargs: None)
        core.check_gradients = lambda *args, **kwargs: None
        core.check_outputs = lambda *args, **kwargs: None
        class _Pass:
            def __getattr__(self, name):
                return lambda *args, **kwargs: None
        check = _Pass()
    ''')
    nb = _blank_except("sigmoid_prime")
    nb.cells[cell_index(nb, "central_difference")].source += "\n\n" + patch_checks
    add("patch_checks", nb, ("sigmoid_prime",))

    # Monkeypatching NumPy/torch: in an exercise cell, and inside a function during the check.
    numpy_patch = dict(BUGGY, relu_prime=sols["relu_prime"])
    numpy_patch["sigmoid_prime"] += textwrap.dedent('''
        import torch
        np.abs = lambda v, *args, **kwargs: np.zeros(np.shape(v))
        torch.allclose = lambda *args, **kwargs: True
    ''')
    numpy_patch["tanh_prime"] = textwrap.dedent('''\
        def tanh_prime(x):
            import numpy
            numpy.abs = lambda v, *args, **kwargs: numpy.zeros(numpy.shape(v))
            return 1.0 - numpy.tanh(x)
    ''')
    add("patch_numpy", fill(released(A), numpy_patch), ("relu_prime",))

    # Silencing errors through IPython: a custom exception handler, an input transformer.
    add("ipython_exc", insert_after(_blank_except(), "central_difference",
                                    "get_ipython().set_custom_exc((BaseException,), "
                                    "lambda *args, **kwargs: None)"), ())
    add("ipython_transformer", insert_after(_blank_except(), "central_difference",
                                            "get_ipython().input_transformers_post.append("
                                            "lambda lines: ['pass\\n'])"), ())

    # Editing, deleting and unmarking test cells.
    nb = _blank_except("relu_prime")
    nb.cells[cell_index(nb, "test_central_difference")].source = "pass"
    nb.cells[cell_index(nb, "test_sigmoid_prime")].source = 'print("✓ sigmoid_prime: passed")'
    del nb.cells[cell_index(nb, "test_tanh_prime")]
    nb.cells[cell_index(nb, "test_relu_prime")].metadata["nbgrader"]["points"] = 100
    graph = nb.cells[cell_index(nb, "test_graph_backward")]
    graph.metadata.pop("nbgrader")
    graph.source = "pass"
    i = cell_index(nb, "test_neuron_backward")
    nb.cells[i] = nbformat.v4.new_markdown_cell("✓ passed", metadata=nb.cells[i].metadata)
    add("edit_tests", nb, ("relu_prime",))

    # Faked ✓ outputs in every test cell.
    nb = _blank_except()
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            cell.execution_count = 1
            cell.outputs = [nbformat.v4.new_output(
                "execute_result", data={"text/plain": "✓ passed"}, execution_count=1)]
    add("fake_output", nb, ())

    # Reading the solution source at grading time.
    finder = textwrap.dedent('''\
        def _solutions():
            import json, os
            import checks
            starts = [os.getcwd(), os.path.dirname(os.path.abspath(checks.__file__)),
                      os.path.expanduser("~"), os.environ.get("PWD", ""), os.environ.get("OLDPWD", "")]
            for start in starts:
                d = start
                for _ in range(10):
                    path = os.path.join(d, "solutions", "01_chain_rule", "01_chain_rule.ipynb")
                    if os.path.exists(path):
                        ns = {"np": np, "sigmoid": lambda x: 1 / (1 + np.exp(-x))}
                        for cell in json.load(open(path))["cells"]:
                            if cell["cell_type"] == "code" and "BEGIN SOLUTION" in "".join(cell["source"]):
                                exec("".join(cell["source"]), ns)
                        return ns
                    d = os.path.dirname(d)
            return {}
        _SOL = _solutions()

        def central_difference(f, x, h=1e-5):
            return _SOL["central_difference"](f, x, h)
    ''')
    thief = {"central_difference": finder}
    for name, args in [("sigmoid_prime", "x"), ("tanh_prime", "x"), ("relu_prime", "x"),
                       ("graph_backward", "x, y, z"), ("neuron_backward", "w, x, b")]:
        thief[name] = f"def {name}({args}):\n    return _SOL[{name!r}]({args})\n"
    add("read_solutions", fill(released(A), thief), ())

    # A file that is not a notebook at all: reported as an error, never stops the others.
    path = submitted / "broken" / A / f"{A}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{ this is not a notebook")
    return expect


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One graded course shared by every test: (run, expected honest exercises, course dir)."""
    course = tmp_path_factory.mktemp("course")
    expect = make_submissions(course / "submitted")
    # Every other assignment that has been released (solutions/ and notebooks/ both exist).
    others = [a for a in grader.find_assignments(ROOT / "solutions")
              if a != A and (ROOT / "notebooks" / a / f"{a}.ipynb").is_file()]
    for a in others:
        write(correct(a), course / "submitted", "allcorrect", a)
    write(correct(A), course / "submitted", "allcorrect", A)
    run = grader.grade(out=course, workers=2, timeout=CELL_TIMEOUT, batch=3, verbose=True)
    results = {(r.student, r.assignment): r for r in run["results"]}
    return results, expect, course, others


def test_every_submission_is_graded_except_the_broken_file(graded):
    results, expect, _, _ = graded
    for student in expect:
        assert results[(student, A)].status == "graded", results[(student, A)].message
    assert results[("broken", A)].status == "error"
    assert results[("broken", A)].score == 0


@pytest.mark.parametrize("student", ["correct", "blank", "partial", "buggy", "noisy", "looping"])
def test_honest_submissions_get_exactly_their_points(graded, student):
    results, expect, _, _ = graded
    r = results[(student, A)]
    assert r.max_score == sum(points().values())
    assert r.score == honest(*expect[student]), r.cells
    for exercise, pts in points().items():
        assert r.cells[f"test_{exercise}"][0] == (pts if exercise in expect[student] else 0)
    assert not r.integrity


def test_infinite_loop_times_out_on_its_cell_only(graded):
    results, _, course, _ = graded
    nb = nbformat.read(course / "autograded" / "looping" / A / f"{A}.ipynb", as_version=4)
    cell = nb.cells[cell_index(nb, "test_tanh_prime")]
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert errors and errors[0].ename in ("KeyboardInterrupt", "CellTimeoutError")
    assert results[("looping", A)].cells["test_neuron_backward"][0] == points()["neuron_backward"]


@pytest.mark.parametrize("student", ["shadow_files", "shadow_runtime", "patch_checks", "patch_numpy",
                                     "ipython_exc", "ipython_transformer", "edit_tests",
                                     "fake_output", "read_solutions"])
def test_tamper_attempts_never_beat_honest_code(graded, student):
    results, expect, _, _ = graded
    r = results[(student, A)]
    assert r.status == "graded"
    assert r.max_score == sum(points().values()), "points cannot be changed by the submission"
    assert r.score <= honest(*expect[student]), r.cells
    for exercise in points():
        if exercise not in expect[student]:
            assert r.cells[f"test_{exercise}"][0] == 0, (exercise, r.cells)


def test_stray_files_are_stripped_and_reported(graded):
    results, _, course, _ = graded
    r = results[("shadow_files", A)]
    assert {"checks.py", "checks/__init__.py", "checks/chain_rule.py"} <= set(r.stripped)
    assert not (course / "autograded" / "shadow_files" / A / "checks.py").exists()


@pytest.mark.parametrize("student,changed", [
    ("patch_numpy", "numpy.abs"), ("patch_checks", "checks.chain_rule.sigmoid_prime"),
    ("ipython_exc", "custom_exceptions"), ("ipython_transformer", "input_transformers_post"),
])
def test_integrity_guard_names_what_was_changed(graded, student, changed):
    results, _, course, _ = graded
    r = results[(student, A)]
    assert any(changed in event for event in r.integrity), r.integrity
    html = (course / "feedback" / student / A / f"{A}.html").read_text()
    assert "IntegrityError" in html


def test_honest_code_keeps_its_points_after_a_tamper_attempt(graded):
    """The guard restores the originals: later test cells are graded on the real package."""
    results, _, _, _ = graded
    assert results[("patch_numpy", A)].cells["test_relu_prime"][0] == points()["relu_prime"]
    assert results[("patch_checks", A)].cells["test_sigmoid_prime"][0] == points()["sigmoid_prime"]


def test_edited_and_deleted_test_cells_are_restored(graded):
    _, _, course, _ = graded
    nb = nbformat.read(course / "autograded" / "edit_tests" / A / f"{A}.ipynb", as_version=4)
    original = {c.metadata["nbgrader"]["grade_id"]: c.source for c in released(A).cells
                if c.metadata.get("nbgrader", {}).get("grade")}
    graded_cells = {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells
                    if c.metadata.get("nbgrader", {}).get("grade")}
    assert set(original) <= set(graded_cells)
    for gid, source in original.items():
        assert source in graded_cells[gid].source  # restored (re-added cells carry a comment)
        assert graded_cells[gid].cell_type == "code"


def test_fake_outputs_are_cleared(graded):
    _, _, course, _ = graded
    nb = nbformat.read(course / "autograded" / "fake_output" / A / f"{A}.ipynb", as_version=4)
    cell = nb.cells[cell_index(nb, "test_sigmoid_prime")]
    assert not any("✓ passed" in json.dumps(o) for o in cell.outputs)
    assert any(o.output_type == "error" for o in cell.outputs)


def test_every_assignment_found_grades_its_solution_in_full(graded):
    results, _, _, others = graded
    for a in [A, *others]:
        r = results[("allcorrect", a)]
        assert r.status == "graded", r.message
        assert r.max_score > 0 and r.score == r.max_score, (a, r.cells)
        assert not r.integrity, (a, r.integrity)


def test_feedback_html_per_student(graded):
    results, _, course, _ = graded
    for (student, a), r in results.items():
        if r.status == "graded":
            assert (course / "feedback" / student / a / f"{a}.html").is_file()
    html = (course / "feedback" / "buggy" / A / f"{A}.html").read_text()
    assert "one-sided" in html and "relu" in html


def test_csv_exports(graded):
    results, _, course, _ = graded
    with (course / "grades.csv").open() as fh:
        rows = {(r["student_id"], r["assignment"]): r for r in csv.DictReader(fh)}
    for (student, a), r in results.items():
        if r.status == "graded":
            assert float(rows[(student, a)]["raw_score"]) == pytest.approx(r.score)
            assert float(rows[(student, a)]["max_score"]) == pytest.approx(r.max_score)
    with (course / "grading_report.csv").open() as fh:
        report = {(r["student"], r["assignment"]): r for r in csv.DictReader(fh)}
    assert report[("broken", A)]["status"] == "error"
    assert report[("correct", A)]["status"] == "graded"
    assert "patching numpy/torch" in report[("patch_numpy", A)]["review_flags"]
    assert report[("correct", A)]["review_flags"] == ""


def test_course_gradebook_holds_the_merged_scores(graded):
    from nbgrader.api import Gradebook

    results, _, course, _ = graded
    with Gradebook(f"sqlite:///{course / '.nbgrader' / 'gradebook.db'}", grader.COURSE_ID) as gb:
        for (student, a), r in results.items():
            if r.status == "graded":
                assert gb.find_submission(a, student).score == pytest.approx(r.score)


# ---- cheap unit tests (no nbgrader run) ----------------------------------------------------
def test_check_bindings_are_read_from_the_solution():
    b = grader.check_bindings(ROOT / "solutions" / A, ROOT)
    assert b["check"] == "checks.chain_rule"
    assert b.get("gradcheck") == "checks:gradcheck"


def test_collect_zip_layouts(tmp_path):
    known = {A: [A], "02_forward_pass": ["02_forward_pass"]}
    nb = nbformat.writes(released(A))
    zpath = tmp_path / "subs.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr(f"ann/{A}.ipynb", nb)            # <student>/<assignment>.ipynb
        zf.writestr(f"{A}/ben.ipynb", nb)            # <assignment>/<student>.ipynb
        zf.writestr(f"cai_{A}.ipynb", nb)            # <student>_<assignment>.ipynb
        zf.writestr("dee.ipynb", nb)                 # <student>.ipynb with --assignment
        zf.writestr("__MACOSX/._dee.ipynb", "junk")
        zf.writestr("../evil.ipynb", nb)             # not a valid student id: skipped
    n = grader.collect_zip(zpath, tmp_path / "submitted", known, A, lambda *a: None)
    assert n == 4
    for s in ("ann", "ben", "cai", "dee"):
        assert (tmp_path / "submitted" / s / A / f"{A}.ipynb").is_file()
    assert not (tmp_path / "evil.ipynb").exists()


def test_review_flags(tmp_path):
    nb = insert_after(released(A), "sigmoid_prime", "import ctypes\nnp.exp = None")
    path = write(nb, tmp_path, "x", A)
    flags = grader.scan(path)
    assert "ctypes" in flags and "patching numpy/torch" in flags
    assert grader.scan(write(correct(A), tmp_path, "y", A)) == []
