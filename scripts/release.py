"""Regenerate the learner notebooks (notebooks/) from the instructor sources (solutions/).

Usage:  python scripts/release.py [ASSIGNMENT ...] [--dest DIR]

Runs `nbgrader generate_assignment` for each assignment folder in solutions/. With --dest the
release goes to another folder (the tests release into a temporary folder and diff it with
notebooks/); the gradebook is then kept beside it, never in the repository.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def assignments() -> list[str]:
    """Names of the assignment folders in solutions/, in course order."""
    return sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir() and p.name[:2].isdigit())


def release(names: list[str] | None = None, dest: Path | None = None) -> Path:
    """Generate the learner version of each assignment into `dest` (default notebooks/)."""
    names = names or assignments()
    dest = Path(dest) if dest else ROOT / "notebooks"
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{Path(tmp) / 'gradebook.db'}"
        for name in names:
            out = dest / name
            if out.exists():
                shutil.rmtree(out)
            cmd = [
                sys.executable, "-m", "nbgrader", "generate_assignment", name,
                "--force", "--no-db", "--log-level=WARN",
                f"--CourseDirectory.root={ROOT}",
                f"--CourseDirectory.release_directory={dest}",
                f"--CourseDirectory.db_url={db}",
            ]
            subprocess.run(cmd, cwd=ROOT, check=True)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="assignments (default: all)")
    parser.add_argument("--dest", type=Path, default=None)
    args = parser.parse_args()
    out = release(args.names or None, args.dest)
    print(f"released {', '.join(args.names or assignments())} -> {out}")


if __name__ == "__main__":
    main()
