"""Autograde every submission of every assignment, in parallel: `make grade`.

    python scripts/grade.py                         # submitted/<student>/<assignment>/*.ipynb
    python scripts/grade.py --zip submissions.zip   # collect a zip of notebooks named by student
    python scripts/grade.py --workers 2 --timeout 60 --students alice bob

Steps (docs/instructor.md explains them for instructors):
1. register: every assignment in solutions/ that has submissions is (re)generated into the
   gradebook (.nbgrader/gradebook.db) with `nbgrader generate_assignment`, so nbgrader knows
   its test cells, points and checksums. Skipped when the solution notebook did not change.
2. collect (optional): a zip of notebooks is unpacked into submitted/<student>/<assignment>/.
3. autograde: submissions are split into jobs; each job is a private nbgrader course in a
   temporary folder (its own copy of the gradebook, only the submitted notebooks — every other
   file is stripped — and a private copy of the `checks` package) and runs
   `nbgrader autograde` + `nbgrader generate_feedback` in its own processes, with the
   integrity guard (scripts/grading/guard.py). Jobs run `--workers` at a time. A job that
   fails is retried one student at a time; a student that still fails is reported, never
   stopping the others.
4. merge: each job's scores are copied into the course gradebook (one writer, no sqlite
   locking), its autograded notebooks into autograded/ and its HTML into feedback/.
5. export: grades.csv (nbgrader's export: one row per student and assignment) and
   grading_report.csv (per test cell scores, status, integrity events, flags for review).
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures as cf
import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRADING_DIR = Path(__file__).resolve().parent / "grading"
COURSE_ID = "backprop-from-scratch"
NBGRADER = [sys.executable, "-m", "nbgrader"]
# nbgrader runs the `alembic` command of its environment: make sure that one is found.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
STUDENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")

# Patterns in a learner's own cells that deserve a human look (reported, never penalised).
SUSPICIOUS = {
    "get_ipython": r"\bget_ipython\b",
    "sys.modules": r"\bsys\s*\.\s*modules\b",
    "ctypes": r"\bctypes\b",
    "gc": r"\bgc\s*\.\s*get_(objects|referrers)\b",
    "frame access": r"\b_getframe\b|\bf_locals\b|\bf_globals\b|\binspect\s*\.\s*(stack|currentframe)\b",
    "trace hooks": r"\bset(trace|profile)\b",
    "code objects": r"__code__|__globals__|__builtins__|\bbuiltins\b",
    "import system": r"\bimportlib\b|\bmeta_path\b|__import__",
    "patching checks": r"\bcheck(s)?\s*\.\s*[A-Za-z_][\w.]*\s*=(?!=)|\bsetattr\s*\(\s*check",
    "patching numpy/torch": r"\b(np|numpy|torch|F)\s*\.\s*[A-Za-z_][\w.]*\s*=(?!=)|\bsetattr\s*\(\s*(np|numpy|torch)\b",
    "solutions path": r"solutions",
    "files": r"(?<![.\w])open\s*\(|\bos\s*\.\s*(system|popen|remove|unlink|chdir|_exit)\b|\bsubprocess\b|\bshutil\b",
    "exec/eval": r"(?<![.\w])(exec|eval|compile)\s*\(",
}


# --------------------------------------------------------------------------------------------
# Assignments and the gradebook
# --------------------------------------------------------------------------------------------
def find_assignments(solutions: Path) -> dict[str, list[str]]:
    """{assignment: [notebook names without .ipynb]} for every NN_* folder in solutions/."""
    out = {}
    for d in sorted(p for p in solutions.iterdir() if p.is_dir() and p.name[:2].isdigit()):
        nbs = sorted(p.stem for p in d.glob("*.ipynb"))
        if nbs:
            out[d.name] = nbs
    return out


def check_bindings(solution_dir: Path, pkg: Path) -> dict[str, str]:
    """Names the notebooks bind to the checks package: {'check': 'checks.chain_rule', ...}.

    Read from the instructor's notebooks; the grader re-binds them before every test cell, so a
    learner who edits the (unlocked) import cell cannot point `check` at something else.
    """
    import nbformat

    def is_module(dotted: str) -> bool:
        rel = Path(*dotted.split("."))
        return (pkg / rel).with_suffix(".py").exists() or (pkg / rel / "__init__.py").exists()

    out: dict[str, str] = {}
    for path in sorted(solution_dir.glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            src = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
            try:
                tree = ast.parse(src)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and (
                        node.module == "checks" or node.module.startswith("checks.")):
                    for alias in node.names:
                        full = f"{node.module}.{alias.name}"
                        out[alias.asname or alias.name] = full if is_module(full) else f"{node.module}:{alias.name}"
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.name == "checks" or alias.name.startswith("checks."):
                            if alias.asname:
                                out[alias.asname] = alias.name
                            else:
                                out["checks"] = "checks"
    return out


def _hash_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def register(assignments: list[str], solutions: Path, out: Path, log) -> None:
    """Make the course gradebook know each assignment (test cells, points, checksums)."""
    state_path = out / ".nbgrader" / "registered.json"
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    db = out / ".nbgrader" / "gradebook.db"
    for name in assignments:
        digest = "".join(_hash_file(p) for p in sorted((solutions / name).glob("*.ipynb")))
        if db.exists() and state.get(name) == digest:
            continue
        log(f"registering {name} in the gradebook (nbgrader generate_assignment)")
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [*NBGRADER, "generate_assignment", name, "--force", "--log-level=WARN",
                   f"--CourseDirectory.root={solutions.parent}",
                   f"--CourseDirectory.source_directory={solutions.name}",
                   f"--CourseDirectory.release_directory={tmp}",
                   f"--CourseDirectory.db_url=sqlite:///{db}",
                   f"--CourseDirectory.course_id={COURSE_ID}"]
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"could not register {name}:\n{proc.stdout}{proc.stderr}\n"
                     "If its test cells changed after grading started, move .nbgrader/gradebook.db "
                     "away (or remove the old submissions from it) and run again.")
        state[name] = digest
        state_path.write_text(json.dumps(state, indent=1))


# --------------------------------------------------------------------------------------------
# Collecting submissions
# --------------------------------------------------------------------------------------------
def collect_zip(zip_path: Path, submitted: Path, assignments: dict[str, list[str]],
                default_assignment: str | None, log) -> int:
    """Unpack a zip of notebooks named by student into submitted/<student>/<assignment>/.

    Accepted entry names: <student>/<assignment>.ipynb, <assignment>/<student>.ipynb,
    <student>_<assignment>.ipynb, or <student>.ipynb with --assignment.
    """
    count = 0
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            path = Path(info.filename)
            if (info.is_dir() or path.suffix != ".ipynb" or path.is_absolute()
                    or {"..", "__MACOSX", ".ipynb_checkpoints"} & set(path.parts)):
                continue
            stem, parent = path.stem, (path.parent.name if len(path.parts) > 1 else "")
            student = assignment = None
            if stem in assignments and parent:
                student, assignment = parent, stem
            elif parent in assignments:
                student, assignment = stem, parent
            else:
                for a in assignments:
                    if stem.endswith("_" + a):
                        student, assignment = stem[: -len(a) - 1], a
                        break
                else:
                    if default_assignment:
                        student, assignment = stem, default_assignment
            if not student or not assignment or not STUDENT_RE.match(student):
                log(f"  skipped {info.filename}: cannot tell student and assignment (see docs/instructor.md)")
                continue
            dest = submitted / student / assignment / f"{assignments[assignment][0]}.ipynb"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(zf.read(info))
            count += 1
    return count


def find_submissions(submitted: Path, assignments: dict[str, list[str]],
                     only_students: list[str] | None, only_assignments: list[str] | None
                     ) -> list[tuple[str, str]]:
    subs = []
    if not submitted.exists():
        return subs
    for sdir in sorted(p for p in submitted.iterdir() if p.is_dir()):
        if not STUDENT_RE.match(sdir.name) or (only_students and sdir.name not in only_students):
            continue
        for a in assignments:
            if (only_assignments and a not in only_assignments) or not (sdir / a).is_dir():
                continue
            subs.append((sdir.name, a))
    return subs


def scan(nb_path: Path) -> list[str]:
    """Flags for instructor review: suspicious patterns in the learner's own code cells."""
    import nbformat

    try:
        nb = nbformat.read(nb_path, as_version=4)
    except Exception as exc:  # unreadable notebook: nbgrader will report it too
        return [f"unreadable notebook ({type(exc).__name__})"]
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "code"
                     and not c.metadata.get("nbgrader", {}).get("locked", False))
    return [name for name, pattern in SUSPICIOUS.items() if re.search(pattern, text)]


# --------------------------------------------------------------------------------------------
# Jobs: one private nbgrader course each
# --------------------------------------------------------------------------------------------
@dataclass
class Result:
    student: str
    assignment: str
    status: str = "error"          # graded | error
    score: float = 0.0
    max_score: float = 0.0
    cells: dict[str, tuple[float, float]] = field(default_factory=dict)
    integrity: list[str] = field(default_factory=list)
    stripped: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    message: str = ""
    seconds: float = 0.0


@dataclass
class JobOutcome:
    assignment: str
    students: list[str]
    job_dir: Path
    ok: bool
    log: str
    seconds: float
    peak_rss: int  # bytes: largest sum of the job's processes (nbgrader + kernel)


CONFIG_TEMPLATE = '''\
# Generated by scripts/grade.py for one grading job; see scripts/grading/guard.py.
import sys
sys.path.insert(0, {grading_dir!r})
from guard import GuardedExecute
from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, IgnorePattern,
                                    LimitOutput, SaveAutoGrades)

c = get_config()
c.CourseDirectory.root = {root!r}
c.CourseDirectory.course_id = {course!r}
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.db_url = {db!r}
c.Autograde.create_student = True
c.OverwriteCells.add_missing_cells = True
c.Autograde.autograde_preprocessors = [GuardedExecute, IgnorePattern, ClearMetadataPreprocessor,
                                       LimitOutput, SaveAutoGrades, AssignLatePenalties,
                                       CheckCellMetadata]
c.Execute.timeout = {timeout}
c.GuardedExecute.timeout = {timeout}
c.GuardedExecute.interrupt_on_timeout = True
c.GuardedExecute.pkg_dir = {pkg!r}
c.GuardedExecute.bindings = {bindings!r}
c.GuardedExecute.events_path = {events!r}
'''


def kernel_env() -> dict[str, str]:
    """The environment of nbgrader and the kernels: nothing that points at the repository."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PWD", "OLDPWD", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONHOME")}
    env.update({"MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
                "PYTHONWARNINGS": "ignore", "JUPYTER_PLATFORM_DIRS": "1"})
    return env


def prepare_job(job_dir: Path, assignment: str, students: list[str], notebooks: list[str],
                submitted: Path, master_db: Path, bindings: dict[str, str], timeout: int,
                results: dict[tuple[str, str], Result]) -> None:
    """A private course: gradebook copy, stripped submissions, private checks copy, config."""
    job_dir.mkdir(parents=True)
    shutil.copy2(master_db, job_dir / "gradebook.db")
    pkg = job_dir / "pkg"
    shutil.copytree(ROOT / "checks", pkg / "checks", ignore=shutil.ignore_patterns("__pycache__"))
    if (ROOT / "data").is_dir():
        shutil.copytree(ROOT / "data", pkg / "data", ignore=shutil.ignore_patterns("__pycache__"))
    wanted = {f"{nb}.ipynb" for nb in notebooks} | {"timestamp.txt"}
    for student in students:
        src = submitted / student / assignment
        dest = job_dir / "submitted" / student / assignment
        dest.mkdir(parents=True)
        res = results[(student, assignment)]
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src)
            if path.is_file() and str(rel) in wanted and not path.is_symlink():
                shutil.copy2(path, dest / rel)
            elif path.is_file() or path.is_symlink():
                res.stripped.append(str(rel))
        for nb in notebooks:
            if (dest / f"{nb}.ipynb").exists():
                res.flags = scan(dest / f"{nb}.ipynb")
    (job_dir / "nbgrader_config.py").write_text(CONFIG_TEMPLATE.format(
        grading_dir=str(GRADING_DIR), root=str(job_dir), course=COURSE_ID,
        db=f"sqlite:///{job_dir / 'gradebook.db'}", timeout=int(timeout), pkg=str(pkg),
        bindings=bindings, events=str(job_dir / "integrity.jsonl")))


def _run_measured(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[int, str, int]:
    """Run cmd; return (returncode, output, peak RSS in bytes of its whole process tree)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover
        psutil = None
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        peak, start = 0, time.monotonic()
        parent = psutil.Process(proc.pid) if psutil else None
        while proc.poll() is None:
            if parent is not None:
                try:
                    procs = [parent, *parent.children(recursive=True)]
                    peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
                except Exception:
                    pass
            if time.monotonic() - start > timeout:
                os.killpg(proc.pid, 9)
                proc.wait()
                out.seek(0)
                return -9, out.read() + f"\n[grade.py] killed after {timeout:.0f} s", peak
            time.sleep(0.2)
        out.seek(0)
        return proc.returncode, out.read(), peak


def run_job(job_dir: Path, assignment: str, students: list[str], feedback: bool,
            job_timeout: float) -> JobOutcome:
    env = kernel_env()
    start = time.monotonic()
    rc, log, peak = _run_measured([*NBGRADER, "autograde", assignment, "--force"],
                                  job_dir, env, job_timeout)
    if feedback and rc != -9:
        rc2, log2, peak2 = _run_measured([*NBGRADER, "generate_feedback", assignment, "--force"],
                                         job_dir, env, 600)
        log += log2
        peak = max(peak, peak2)
    return JobOutcome(assignment, students, job_dir, rc == 0, log, time.monotonic() - start, peak)


# --------------------------------------------------------------------------------------------
# Merging into the course
# --------------------------------------------------------------------------------------------
def _quiet_sqlalchemy() -> None:
    """nbgrader's Gradebook triggers harmless SAWarnings (autoflush); keep the progress readable."""
    import warnings

    from sqlalchemy.exc import SAWarning

    warnings.filterwarnings("ignore", category=SAWarning)


def read_scores(job_dir: Path, assignment: str, student: str, res: Result) -> bool:
    """Fill res from the job's gradebook; False when the student has no autograded result."""
    from nbgrader.api import Gradebook, MissingEntry

    _quiet_sqlalchemy()
    if not (job_dir / "autograded" / student / assignment).is_dir():
        return False
    with Gradebook(f"sqlite:///{job_dir / 'gradebook.db'}", COURSE_ID) as gb:
        try:
            sub = gb.find_submission(assignment, student)
        except MissingEntry:
            return False
        res.cells = {}
        for nb in sub.notebooks:
            for g in nb.grades:
                if g.auto_score is None and g.needs_manual_grade:
                    continue
                res.cells[f"{nb.name}:{g.name}" if len(sub.notebooks) > 1 else g.name] = (
                    float(g.score or 0), float(g.max_score))
        res.score, res.max_score = float(sub.score), float(sub.max_score)
    return True


def merge_into(master_db: Path, job_dir: Path, assignment: str, student: str) -> None:
    """Copy one student's automatic scores from a job's gradebook into the course gradebook."""
    from nbgrader.api import Gradebook

    _quiet_sqlalchemy()
    with Gradebook(f"sqlite:///{job_dir / 'gradebook.db'}", COURSE_ID) as src, \
            Gradebook(f"sqlite:///{master_db}", COURSE_ID) as dst:
        s = src.find_submission(assignment, student)
        dst.update_or_create_student(student)
        dst.update_or_create_submission(assignment, student, timestamp=s.timestamp)
        for snb in s.notebooks:
            dnb = dst.find_submission_notebook(snb.name, assignment, student)
            dnb.late_submission_penalty = snb.late_submission_penalty
            for g in snb.grades:
                d = dst.find_grade(g.name, snb.name, assignment, student)
                d.auto_score, d.needs_manual_grade = g.auto_score, g.needs_manual_grade
            for c in snb.comments:
                d = dst.find_comment(c.name, snb.name, assignment, student)
                d.auto_comment = c.auto_comment
        dst.db.commit()


def _replace_tree(src: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    if src.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dest)


def export(out: Path, master_db: Path, results: list[Result], csv_path: Path) -> None:
    """grades.csv via nbgrader export, and grading_report.csv with the details."""
    proc = subprocess.run([*NBGRADER, "export", f"--to={csv_path}", "--log-level=WARN",
                           f"--CourseDirectory.root={out}",
                           f"--CourseDirectory.db_url=sqlite:///{master_db}",
                           f"--CourseDirectory.course_id={COURSE_ID}"],
                          cwd=out, capture_output=True, text=True, env=kernel_env())
    if proc.returncode != 0:
        print(f"nbgrader export failed:\n{proc.stdout}{proc.stderr}", file=sys.stderr)
    report = csv_path.with_name("grading_report.csv")
    with report.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["student", "assignment", "status", "score", "max_score", "cells",
                    "integrity", "stripped_files", "review_flags", "message"])
        for r in sorted(results, key=lambda r: (r.assignment, r.student)):
            cells = "; ".join(f"{k}={s:g}/{m:g}" for k, (s, m) in r.cells.items())
            w.writerow([r.student, r.assignment, r.status, f"{r.score:g}", f"{r.max_score:g}",
                        cells, " | ".join(r.integrity), " ".join(r.stripped), ", ".join(r.flags),
                        r.message])


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------
def grade(*, solutions: Path = ROOT / "solutions", out: Path = ROOT, submitted: Path | None = None,
          workers: int | None = None, timeout: int = 120, batch: int | None = None,
          feedback: bool = True, students: list[str] | None = None,
          assignments: list[str] | None = None, csv_path: Path | None = None,
          job_timeout: float | None = None, verbose: bool = True, keep_jobs: bool = False
          ) -> dict:
    """Grade everything; return {'results': [Result], 'jobs': [JobOutcome], 'seconds': float}."""
    log = print if verbose else (lambda *a, **k: None)
    out = Path(out)
    submitted = Path(submitted) if submitted else out / "submitted"
    csv_path = Path(csv_path) if csv_path else out / "grades.csv"
    workers = workers or os.cpu_count() or 1
    (out / ".nbgrader").mkdir(parents=True, exist_ok=True)
    master_db = out / ".nbgrader" / "gradebook.db"

    known = find_assignments(solutions)
    subs = find_submissions(submitted, known, students, assignments)
    if not subs:
        log(f"no submissions found in {submitted}/<student>/<assignment>/ "
            f"(assignments: {', '.join(known) or 'none'})")
        return {"results": [], "jobs": [], "seconds": 0.0}
    wanted = sorted({a for _, a in subs})
    register(wanted, solutions, out, log)

    results = {(s, a): Result(s, a) for s, a in subs}
    by_assignment: dict[str, list[str]] = {}
    for s, a in subs:
        by_assignment.setdefault(a, []).append(s)
    # Batches: several students per nbgrader run saves its start-up cost, while at least
    # ~3 jobs per worker keep the workers evenly busy.
    if batch is None:
        batch = max(1, min(8, len(subs) // (3 * workers)))
    queue = []
    for a, ss in by_assignment.items():  # near-equal chunks of at most `batch` students
        k = -(-len(ss) // batch)
        queue += [(a, ss[i::k]) for i in range(k)]
    queue.sort(key=lambda job: -len(job[1]))  # biggest first: the workers finish together
    bindings = {a: check_bindings(solutions / a, ROOT) for a in wanted}
    per_student = job_timeout or max(300, 30 * timeout)

    tmp = Path(tempfile.mkdtemp(prefix="grading-"))
    total, done = len(subs), 0
    lock = threading.Lock()
    start = time.monotonic()
    outcomes: list[JobOutcome] = []
    counter = iter(range(10**9))
    log(f"grading {total} submission(s) of {len(wanted)} assignment(s) with {workers} worker(s), "
        f"{len(queue)} job(s)")

    def submit(pool, a: str, ss: list[str]):
        job_dir = tmp / f"job{next(counter):04d}-{a}"
        prepare_job(job_dir, a, ss, known[a], submitted, master_db, bindings[a], timeout, results)
        return pool.submit(run_job, job_dir, a, ss, feedback, per_student * len(ss))

    try:
        with cf.ThreadPoolExecutor(max_workers=workers) as pool:
            pending = {submit(pool, a, ss) for a, ss in queue}
            while pending:
                finished, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    job = fut.result()
                    outcomes.append(job)
                    events = []
                    ev_path = job.job_dir / "integrity.jsonl"
                    if ev_path.exists():
                        events = [json.loads(line) for line in ev_path.read_text().splitlines() if line]
                    retry = []
                    for s in job.students:
                        res = results[(s, job.assignment)]
                        res.seconds = job.seconds / len(job.students)
                        if read_scores(job.job_dir, job.assignment, s, res):
                            with lock:
                                merge_into(master_db, job.job_dir, job.assignment, s)
                            for kind in ("autograded", "feedback"):
                                _replace_tree(job.job_dir / kind / s / job.assignment,
                                              out / kind / s / job.assignment)
                            res.status = "graded"
                            res.integrity = [f"{e['cell']}: {', '.join(e['changed'])} ({e['when']})"
                                             for e in events if e.get("student") == s]
                            if feedback and not (job.job_dir / "feedback" / s / job.assignment).is_dir():
                                res.message = "feedback not generated"
                        elif len(job.students) > 1:
                            retry.append(s)
                        else:
                            res.status = "error"
                            tail = [ln for ln in job.log.splitlines() if ln.strip()][-6:]
                            res.message = " / ".join(tail)[-600:]
                    for s in retry:  # isolate the failure: one student per job
                        pending.add(submit(pool, job.assignment, [s]))
                    for s in job.students:
                        if s in retry:
                            continue
                        done += 1
                        r = results[(s, job.assignment)]
                        elapsed = time.monotonic() - start
                        eta = elapsed / done * (total - done)
                        mark = "ok" if r.status == "graded" else "ERROR"
                        extra = "  integrity!" if r.integrity else ""
                        log(f"[{done:>3}/{total}] {job.assignment:<24} {s:<20} "
                            f"{r.score:5g}/{r.max_score:<5g} {mark}{extra}   "
                            f"({elapsed:.0f} s, ~{eta:.0f} s left)")
                    if not keep_jobs and not retry:
                        shutil.rmtree(job.job_dir, ignore_errors=True)
    finally:
        if not keep_jobs:
            shutil.rmtree(tmp, ignore_errors=True)

    final = list(results.values())
    export(out, master_db, final, csv_path)
    seconds = time.monotonic() - start
    graded = sum(r.status == "graded" for r in final)
    log(f"done: {graded}/{total} graded in {seconds:.0f} s "
        f"({60 * total / max(seconds, 1e-9):.1f} submissions/min); "
        f"grades: {csv_path}, details: {csv_path.with_name('grading_report.csv')}, "
        f"feedback: {out / 'feedback'}")
    for r in final:
        if r.status != "graded":
            log(f"  ERROR {r.student}/{r.assignment}: {r.message}")
        if r.integrity:
            log(f"  integrity {r.student}/{r.assignment}: {'; '.join(r.integrity)}")
    return {"results": final, "jobs": outcomes, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Autograde submitted/ in parallel (see docs/instructor.md).")
    p.add_argument("--submitted", type=Path, default=None, help="default: submitted/")
    p.add_argument("--zip", type=Path, help="collect a zip of notebooks named by student first")
    p.add_argument("--assignment", help="the assignment of a zip's <student>.ipynb entries")
    p.add_argument("--students", nargs="*", help="grade only these students")
    p.add_argument("--assignments", nargs="*", help="grade only these assignments")
    p.add_argument("--workers", type=int, default=None, help="parallel jobs (default: CPU count)")
    p.add_argument("--timeout", type=int, default=120, help="seconds per cell (default 120)")
    p.add_argument("--batch", type=int, default=None, help="students per nbgrader run (default: auto)")
    p.add_argument("--no-feedback", action="store_true", help="skip the HTML feedback")
    p.add_argument("--out", type=Path, default=ROOT, help="course folder for gradebook, outputs, CSV")
    p.add_argument("--solutions", type=Path, default=ROOT / "solutions")
    p.add_argument("--keep-jobs", action="store_true", help="keep the job folders (debugging)")
    args = p.parse_args(argv)
    submitted = args.submitted or args.out / "submitted"
    if args.zip:
        known = find_assignments(args.solutions)
        if args.assignment and args.assignment not in known:
            sys.exit(f"unknown assignment {args.assignment}; known: {', '.join(known)}")
        n = collect_zip(args.zip, submitted, known, args.assignment, print)
        print(f"collected {n} notebook(s) from {args.zip} into {submitted}")
    run = grade(solutions=args.solutions, out=args.out, submitted=submitted, workers=args.workers,
                timeout=args.timeout, batch=args.batch, feedback=not args.no_feedback,
                students=args.students, assignments=args.assignments, keep_jobs=args.keep_jobs)
    return 0 if all(r.status == "graded" for r in run["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
