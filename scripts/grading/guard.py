"""GuardedExecute: nbgrader's Execute preprocessor with an integrity guard around test cells.

Used by the grading runs of scripts/grade.py in place of nbgrader's `Execute`
(`c.Autograde.autograde_preprocessors`). Before the first cell it sends hidden code
(kernel_guard.py) that imports the `checks` package from the grader's private copy and records
the identity of everything a check relies on. Around every autograded test cell it:

1. re-imports `checks` fresh from that copy and re-binds the names the test cells use
   (`check`, `gradcheck`, ...) to the real objects;
2. compares the kernel's state with the record, and the private copy's files with their hashes;
3. runs the test cell; then compares again (learner code runs inside the check).

Anything replaced (a NumPy/torch/builtins function, a checks function patched during the check,
an IPython traceback or execution hook, a trace function, an import hook, a changed file of the
package) is put back, and the test cell gets an `IntegrityError` output: nbgrader then scores it
0 and the learner's feedback says why. Events are appended to `GuardedExecute.events_path`
(JSON lines) for the instructor's report.
"""

from __future__ import annotations

import ast
import hashlib
import json
import secrets
import time
from pathlib import Path

from kernel_guard import GUARD_SOURCE
from nbclient.util import ensure_async, run_sync
from nbformat import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import Execute
from traitlets import Dict, Unicode


def _hash_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


class GuardedExecute(Execute):
    """Execute, plus the integrity guard around autograded test cells (see module docstring)."""

    pkg_dir = Unicode("", help="Folder holding the private copy of checks/ (and data/).").tag(config=True)
    bindings = Dict({}, help="Names test cells use -> 'module' or 'module:attr' in checks.").tag(config=True)
    events_path = Unicode("", help="JSON-lines file for integrity events.").tag(config=True)
    guard_timeout = 60

    def preprocess(self, nb, resources=None, km=None):
        self._guard_name = f"_grading_guard_{secrets.token_hex(6)}"
        self._guard_ready = False
        self._baseline: dict[str, str] = {}
        self._checks_fp: dict[str, str] = {}
        self._files = _hash_tree(Path(self.pkg_dir)) if self.pkg_dir else {}
        self._file_bytes = {k: (Path(self.pkg_dir) / k).read_bytes() for k in self._files}
        self._where = dict((resources or {}).get("nbgrader", {}))
        return super().preprocess(nb, resources, km)

    # -- hidden calls into the kernel ------------------------------------------------------
    async def _hidden(self, expression: str, code: str = "") -> dict | None:
        """Evaluate `expression` (a guard call) in the kernel; return its JSON answer or None.

        The call goes through user_expressions: eval() in the user namespace, after `code` (run
        silently), never through IPython's input/AST transformers or exception handlers.
        """
        nonce = secrets.token_hex(8)
        msg_id = self.kc.execute(code, silent=True, store_history=False, allow_stdin=False,
                                 user_expressions={"r": expression.replace("NONCE", repr(nonce))})
        deadline = time.monotonic() + self.guard_timeout
        while time.monotonic() < deadline:
            try:
                msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=1))
            except Exception:  # queue.Empty
                await self._async_check_alive()
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            expr = msg["content"].get("user_expressions", {}).get("r", {})
            try:
                payload = json.loads(ast.literal_eval(expr["data"]["text/plain"]))
            except Exception:
                return None
            return payload if isinstance(payload, dict) and payload.get("nonce") == nonce else None
        return None

    hidden = run_sync(_hidden)

    def _call(self, method: str, *args: str) -> dict | None:
        extra = "".join(f", {a}" for a in args)
        return self.hidden(f"{self._guard_name}.{method}(NONCE{extra})")

    def _setup(self) -> None:
        source = (GUARD_SOURCE.replace("__GRADING_PKG_DIR__", repr(self.pkg_dir))
                  .replace("__GRADING_BINDINGS__", repr(dict(self.bindings)))
                  .replace("__GRADING_GUARD_NAME__", self._guard_name))
        answer = self.hidden(f"{self._guard_name}.setup(NONCE)", source)
        if answer is None:
            raise RuntimeError("the grading guard could not be installed in the kernel")
        self._baseline = answer["fp"]
        self._checks_fp = answer["checks"]
        self._guard_ready = True

    # -- comparing --------------------------------------------------------------------------
    def _changed(self, fp: dict[str, str], checks_ref: dict[str, str] | None) -> list[str]:
        changed = [k for k, v in self._baseline.items() if not k.startswith("checks|") and fp.get(k) != v]
        if checks_ref is not None:
            changed += [k for k, v in checks_ref.items() if fp.get(k) != v]
        return changed

    def _files_changed(self) -> list[str]:
        if not self.pkg_dir:
            return []
        now = _hash_tree(Path(self.pkg_dir))
        bad = sorted(k for k in set(now) | set(self._files) if now.get(k) != self._files.get(k))
        for k in bad:  # put the private copy back as it was
            path = Path(self.pkg_dir) / k
            if k in self._file_bytes:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(self._file_bytes[k])
            elif path.exists():
                path.unlink()
        return [f"file {k}" for k in bad]

    @staticmethod
    def _pretty(labels: list[str]) -> list[str]:
        out = []
        for label in labels:
            parts = label.split("|")
            if parts[0] == "special":
                out.append(parts[1])
            elif len(parts) >= 3:
                out.append(f"{parts[1]}.{parts[2]}")
            else:
                out.append(label)
        return sorted(set(out))

    def _event(self, cell: NotebookNode, what: list[str], when: str) -> None:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "?")
        if self.events_path:
            record = {**{k: self._where.get(k) for k in ("student", "assignment", "notebook")},
                      "cell": grade_id, "when": when, "changed": what[:20]}
            with open(self.events_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        shown = ", ".join(what[:8]) + (f" and {len(what) - 8} more" if len(what) > 8 else "")
        # First, so nbgrader sees it before any execute_result (it stops at the first one).
        cell.outputs.insert(0, NotebookNode(
            output_type="error", ename="IntegrityError",
            evalue=f"code in this notebook changed {shown} ({when}); this test cell scores 0",
            traceback=[f"IntegrityError: code in this notebook changed {shown} ({when}). The "
                       "grader restored the originals; this test cell scores 0."]))

    def _inspect(self) -> list[str]:
        """What changed since the record (restored on the spot), as readable names."""
        now = self._call("check")
        if now is None:
            return ["the grading guard (it no longer answers)"]
        changed = self._changed(now["fp"], self._checks_fp)
        if changed:
            self._call("restore", repr(changed))
        return self._pretty(changed) + self._files_changed()

    # -- the cell loop ----------------------------------------------------------------------
    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return super().preprocess_cell(cell, resources, index)
        if not self._guard_ready:
            self._setup()
        graded = utils.is_grade(cell) and not utils.is_solution(cell)
        if not graded:
            return super().preprocess_cell(cell, resources, index)

        problems = self._inspect()
        fresh = self._call("fresh")
        if fresh is None:
            problems.append("the grading guard (it no longer answers)")
        else:
            self._checks_fp = fresh["checks"]

        cell, resources = super().preprocess_cell(cell, resources, index)

        post = self._inspect()
        if problems:
            self._event(cell, problems, "before this test cell ran")
        if post:
            self._event(cell, post, "while this test cell ran")
        return cell, resources
