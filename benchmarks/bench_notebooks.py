"""Wall time and peak memory (kernel RSS high-water mark) of every solution notebook.

Each notebook runs top to bottom in a fresh kernel (nbclient); the kernel's peak resident
memory is its VmHWM from /proc/<pid>/status, read just before the kernel shuts down.
Targets: all notebooks under 5 minutes in total on 2 cores; each kernel under 1.5 GB (Binder).
Writes the `notebooks` section of docs/benchmarks.md.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOTAL_TARGET_S, MEM_TARGET_MB = 300, 1536


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(path: Path) -> tuple[float, float, int]:
    nb = nbformat.read(path, as_version=4)
    os.environ["MPLBACKEND"] = "Agg"
    client = NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    with client.setup_kernel():
        pid = client.km.provisioner.process.pid
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        peak = _vm_hwm_mb(pid)
    wall = time.perf_counter() - t0
    errors = sum(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    return wall, peak, errors


def main() -> None:
    paths = sorted((ROOT / "solutions").glob("*/*.ipynb"))
    rows, total, worst = [], 0.0, 0.0
    for path in paths:
        wall, peak, errors = run(path)
        total += wall
        worst = max(worst, peak)
        rows.append(f"| {path.parent.name} | {wall:.1f} | {peak:.0f} | {errors} |")
        print(rows[-1], flush=True)
    load = os.getloadavg()[0]
    md = "\n".join([
        "## Solution notebooks: wall time and peak kernel memory",
        "",
        f"{machine()}. Each notebook in a fresh kernel, one after another; peak memory is the "
        f"kernel's VmHWM (peak RSS, includes Python, NumPy, torch and matplotlib). Load average "
        f"at the end: {load:.1f} (a shared machine: times are upper bounds).",
        "",
        "| notebook | wall time (s) | peak RSS (MB) | error outputs |",
        "|---|---:|---:|---:|",
        *rows,
        f"| **all {len(paths)}** | **{total:.1f}** | max **{worst:.0f}** | |",
        "",
        f"Targets: total under {TOTAL_TARGET_S} s on 2 cores — "
        f"{'met' if total < TOTAL_TARGET_S else 'NOT met'}; each kernel under {MEM_TARGET_MB} MB "
        f"(Binder) — {'met' if worst < MEM_TARGET_MB else 'NOT met'}.",
    ])
    write_section("notebooks", md)
    print(md)


if __name__ == "__main__":
    main()
