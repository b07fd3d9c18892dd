"""Executing notebooks for the tests: each notebook once per test run, two at a time.

`execute_all` runs every solution and learner notebook in worker processes (kernels are
separate processes anyway; two workers keep both cores busy) and returns the executed
notebooks, which the tests then share through a session fixture.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
CELL_TIMEOUT = 600


def notebook_paths(kind: str) -> list[Path]:
    """All notebooks under solutions/ or notebooks/, in course order."""
    return sorted(p for p in (ROOT / kind).glob("*/*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def execute(path: str, allow_errors: bool) -> str:
    """Execute one notebook in its own folder; return the executed notebook as JSON."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    # Two kernels share two cores: one BLAS thread each is much faster than oversubscription.
    env = dict(os.environ, MPLBACKEND="module://matplotlib_inline.backend_inline",
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    os.environ.update(env)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            allow_errors=allow_errors,
                            resources={"metadata": {"path": str(Path(path).parent)}})
    client.execute()
    return nbformat.writes(nb)


def execute_all(paths: list[tuple[Path, bool]], workers: int = 2) -> dict[Path, nbformat.NotebookNode]:
    """Execute (path, allow_errors) pairs in parallel; errors are kept in the outputs."""
    results: dict[Path, nbformat.NotebookNode] = {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {path: pool.submit(execute, str(path), allow) for path, allow in paths}
        for path, fut in futures.items():
            try:
                results[path] = nbformat.reads(fut.result(), as_version=4)
            except Exception as exc:  # kept for the test that asks about this notebook
                results[path] = exc  # type: ignore[assignment]
    return results
