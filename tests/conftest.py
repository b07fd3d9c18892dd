"""Shared fixtures: notebooks are executed once per run and shared by every test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("MPLBACKEND", "Agg")

from notebook_runner import execute_all, notebook_paths  # noqa: E402


@pytest.fixture(scope="session")
def executed_notebooks(request):
    """{path: executed notebook} for the notebooks the selected tests ask about.

    Every notebook is executed once per run (errors kept in the outputs), two at a time,
    and shared by all tests; with -k only the notebooks of the selected tests run.
    """
    wanted = {item.callspec.params["path"] for item in request.session.items
              if "executed_notebooks" in getattr(item, "fixturenames", ())
              and hasattr(item, "callspec") and "path" in item.callspec.params}
    every = notebook_paths("solutions") + notebook_paths("notebooks")
    return execute_all([(p, True) for p in every if p in wanted])


@pytest.fixture
def fake_gpu(monkeypatch):
    """The CUDA path on a CPU-only machine: report a GPU, run its work on the CPU.

    Returns the list of device names the references asked for (so a test can assert "cuda").
    """
    import torch

    from checks.engine import devices

    used: list[str] = []
    monkeypatch.setattr(devices, "cuda_available", lambda: True)
    monkeypatch.setattr(devices, "torch_device", lambda name: used.append(name) or torch.device("cpu"))
    return used


@pytest.fixture(scope="session")
def fresh_release(tmp_path_factory):
    """A release of solutions/ generated into a temporary folder by nbgrader."""
    from release import release

    return release(dest=tmp_path_factory.mktemp("release"))
