"""What the learner sees: a one-line pass, or a short failure report."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from .compare import Comparison
from .diagnose import Diagnosis


@dataclass
class CheckPassed:
    """Returned by a passing check; shows as one line (HTML in Jupyter, text elsewhere)."""

    name: str
    what: str
    compared: str
    n_cases: int
    max_rel: float
    max_rel_fd: float | None = None
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        fd = f", vs finite differences {self.max_rel_fd:.1e}" if self.max_rel_fd is not None else ""
        cases = f"{self.n_cases} case{'s' if self.n_cases != 1 else ''}"
        return (f"✓ {self.name}: {self.what} match {self.compared} on {cases} "
                f"(largest relative error {self.max_rel:.1e}{fd}; device {self.device})")

    __repr__ = __str__

    def __bool__(self) -> bool:
        return True

    def _repr_html_(self) -> str:
        text = html.escape(str(self)[2:])
        return (
            '<div class="backprop-check-pass" style="font-family:monospace;padding:4px 8px;'
            'border-left:4px solid #2e7d32;background:#edf7ee;color:#1b5e20">'
            f'<b>✓</b> {text}</div>'
        )


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    return f"{x:.3g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.2e}"


def table(rows: dict[str, tuple[tuple[int, ...], Comparison]]) -> str:
    """Per-tensor rows: name | shape | max abs err | max rel err | ok."""
    header = ("tensor", "shape", "max abs err", "max rel err", "ok")
    body = [(name, str(shape), _fmt(c.max_abs), _fmt(c.max_rel), "✓" if c.ok else "✗")
            for name, (shape, c) in rows.items()]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  " + " | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, *body]]
    return "\n".join(lines)


def worst_entries(name: str, c: Comparison) -> str:
    """The entries of `name` that differ most: index, yours, expected."""
    if not c.worst:
        return ""
    lines = [f"worst entries of {name} (index: yours vs expected):"]
    for idx, yours, expected in c.worst:
        lines.append(f"  {idx if idx else '()'}: {yours:.6g} vs {expected:.6g}")
    return "\n".join(lines)


def failure(name: str, headline: str, diagnosis: Diagnosis | None, case_label: str,
            rows: dict[str, tuple[tuple[int, ...], Comparison]] | None, worst: str,
            seed: int, warnings_seen: list[str] | None = None) -> str:
    """Assemble the failure message: short enough to read without scrolling."""
    parts = [f"✗ {name}: {headline}", f"  case: {case_label}"]
    if diagnosis is not None:
        parts.append(f"Likely bug: {diagnosis.bug}")
        if diagnosis.hint:
            parts.append(f"Hint: {diagnosis.hint}")
    if warnings_seen:
        parts.append("Your code warned: " + "; ".join(warnings_seen[:3]))
    if rows:
        parts.append(table(rows))
    if worst:
        parts.append(worst)
    parts.append(f"seed={seed} (same seed, same inputs)")
    return "\n".join(parts)
