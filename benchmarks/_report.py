"""Writing benchmark results into docs/benchmarks.md, one section per benchmark.

Each benchmark owns the text between `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->`;
running it again replaces only its own section.
"""

from __future__ import annotations

import platform
import re
from datetime import date
from pathlib import Path

import numpy as np
import torch

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nMeasured by `make bench` (scripts in `benchmarks/`). Each section says when and where.\n"


def machine() -> str:
    """One line describing where a benchmark ran."""
    import os

    return (f"{date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, NumPy {np.__version__}, torch {torch.__version__}")


def write_section(name: str, markdown: str) -> None:
    """Replace (or append) the section `name` of docs/benchmarks.md with `markdown`."""
    text = DOC.read_text() if DOC.exists() else HEADER
    block = f"<!-- bench:{name}:start -->\n{markdown.strip()}\n<!-- bench:{name}:end -->"
    pattern = re.compile(rf"<!-- bench:{re.escape(name)}:start -->.*?<!-- bench:{re.escape(name)}:end -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)
