"""Autograding throughput: generated submissions of the whole course, 1 vs 2 workers, one run.

    .venv/bin/python benchmarks/bench_grading.py [--n 40] [--workers 1 2] [--timeout 120]

Generates --n submissions spread over every released assignment (correct, blank and half-done
in turn, see tests/grading_submissions.py), grades them with scripts/grade.py (the real
`make grade` pipeline: nbgrader autograde + feedback + export, integrity guard on) once per
worker count, each time into a fresh course folder, and writes submissions/minute, the
speed-up and the peak memory per worker (the largest resident set of one job: nbgrader plus its
kernel, sampled every 0.2 s) into docs/benchmarks.md (section "grading").
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE))

import grade as grader  # noqa: E402
from _report import machine, write_section  # noqa: E402
from grading_submissions import course_submissions  # noqa: E402


def released_assignments() -> list[str]:
    return [a for a in grader.find_assignments(ROOT / "solutions")
            if (ROOT / "notebooks" / a / f"{a}.ipynb").is_file()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=40, help="number of submissions (default 40)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--timeout", type=int, default=120)
    args = p.parse_args()

    assignments = released_assignments()
    load_before = os.getloadavg()
    rows, runs = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        for workers in args.workers:
            course = Path(tmp) / f"w{workers}"
            made = course_submissions(course / "submitted", args.n, assignments)
            # Register the assignments first so both runs time grading only.
            grader.register(sorted({a for _, a, _ in made}), ROOT / "solutions", course,
                            lambda *a: None)
            print(f"== {len(made)} submissions, {workers} worker(s)", flush=True)
            t0 = time.monotonic()
            run = grader.grade(out=course, workers=workers, timeout=args.timeout, verbose=True)
            seconds = time.monotonic() - t0
            ok = sum(r.status == "graded" for r in run["results"])
            peaks = [j.peak_rss for j in run["jobs"] if j.peak_rss]
            runs[workers] = seconds
            rows.append((workers, len(made), ok, seconds, 60 * len(made) / seconds,
                         max(peaks) / 2**20 if peaks else float("nan"),
                         statistics.median(peaks) / 2**20 if peaks else float("nan"),
                         len(run["jobs"])))
    load_after = os.getloadavg()

    base = runs.get(min(runs))
    lines = [
        "## Autograding throughput (`benchmarks/bench_grading.py`)",
        "",
        f"{machine()}. Load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f} "
        "(a shared machine: other work ran at the same time, so treat the numbers as a lower "
        "bound on what a dedicated machine gives).",
        "",
        f"{args.n} generated submissions (correct, blank, half-done in turn) spread over the "
        f"released assignments ({', '.join(assignments)}), graded by the full `make grade` "
        "pipeline (nbgrader autograde with the integrity guard, HTML feedback, CSV export); "
        f"cell timeout {args.timeout} s.",
        "",
        "| workers | submissions | graded | wall time (s) | submissions/min | speed-up | "
        "peak memory per worker (MiB, max / median) | nbgrader jobs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for workers, n, ok, seconds, rate, peak, med, jobs in rows:
        lines.append(f"| {workers} | {n} | {ok} | {seconds:.0f} | {rate:.1f} | "
                     f"{base / seconds:.2f}× | {peak:.0f} / {med:.0f} | {jobs} |")
    if len(runs) >= 2:
        w = sorted(runs)
        ratio = runs[w[0]] / runs[w[-1]]
        lines += ["", f"Speed-up {w[-1]} vs {w[0]} worker(s): **{ratio:.2f}×** (target ≥ 1.8× on "
                  "2 free cores). Peak memory per worker is the largest resident set of one job "
                  "(the nbgrader process plus its kernel, sampled every 0.2 s)."]
    text = "\n".join(lines)
    write_section("grading", text)
    print(text)


if __name__ == "__main__":
    main()
