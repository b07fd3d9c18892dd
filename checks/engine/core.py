"""The check runner every topic module is built on.

A topic check is: a list of Cases (seeded inputs over several shapes), an adapter that calls
the learner's functions on copies of those inputs, a torch reference of the same maths, and
optional Hypotheses (known bugs, written as alternative torch references). `check_gradients`
and `check_outputs` do the rest: call, validate, compare with autograd and finite
differences, diagnose, report.
"""

from __future__ import annotations

import functools
import os
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from . import references
from .arrays import as_float, as_float_array
from .compare import ATOL, RTOL, Comparison, allclose, compare
from .devices import resolve_device
from .diagnose import MATCH_ATOL, MATCH_RTOL, Diagnosis, diagnose
from .errors import CheckError, CheckFailed
from .learner import assert_unmodified, quiet, snapshot, to_copies
from .report import CheckPassed, failure, worst_entries

# Autograd and finite differences must agree this well before the learner is judged.
FD_RTOL = 1e-5
FD_ATOL = 1e-6


@dataclass
class Case:
    """One set of inputs for a check.

    inputs: the float64 arrays the learner's code receives (as copies) and that gradients are
        taken with respect to. extra: anything else (labels, options), passed through as is.
    batch: the batch size N, used to recognise factors of N. fd: False for a case that puts an
        input on a kink on purpose (finite differences are meaningless there).
    """

    inputs: dict[str, np.ndarray]
    extra: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    batch: int | None = None
    fd: bool = True

    def describe(self) -> str:
        """A short description of the case, e.g. "x (5, 3), W (4, 3), b (4,)"."""
        shapes = ", ".join(f"{k} {tuple(np.shape(v))}" for k, v in self.inputs.items())
        return f"{self.label}: {shapes}" if self.label else shapes


@dataclass(frozen=True)
class Hypothesis:
    """A known bug, written as a torch function with the reference's signature.

    If the learner's numbers match what this function's autograd gives, `bug` and `hint` are
    reported. Use `surrogate` (below) to express "the right value, the wrong derivative".
    """

    bug: str
    hint: str
    fn: Callable[..., Any]


def surrogate(value: Any, x: Any, local_grad: Any) -> Any:
    """A tensor equal to `value` whose derivative with respect to `x` is `local_grad`.

    value.detach() + (x - x.detach()) * local_grad.detach(): forward gives `value`, backward
    multiplies the upstream gradient by `local_grad`. Lets a Hypothesis say "forgot the
    activation derivative" (local_grad = 1) or "took it at the wrong point".
    """
    return value.detach() + (x - x.detach()) * local_grad.detach()


F = TypeVar("F", bound=Callable[..., Any])
_CHECKS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def public_check(fn: F) -> F:
    """Decorator for every check a learner calls.

    Runs quietly (no warnings, nothing on stderr), and re-raises CheckFailed / CheckError
    without the engine's frames, so the traceback is the learner's cell and one line.
    An unexpected exception inside `checks` becomes a short CheckError naming where it arose.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        error: Exception
        threads = torch.get_num_threads()
        # Checks work on small tensors: one thread is faster and immune to a busy machine.
        torch.set_num_threads(1)
        with quiet():
            try:
                return fn(*args, **kwargs)
            except (CheckFailed, CheckError) as exc:
                error = exc
                text = str(exc)
                if isinstance(exc, CheckFailed) and not text.startswith("✗"):
                    error = CheckFailed(f"✗ {fn.__name__}: {text}" if fn.__name__ not in text
                                        else f"✗ {text}")
            except Exception as exc:  # a bug in the check itself: say so, briefly
                frame = traceback.extract_tb(exc.__traceback__)[-1]
                where = f"{os.path.relpath(frame.filename, _CHECKS_DIR)}:{frame.lineno}"
                error = CheckError(
                    f"{fn.__name__}: internal error in the check ({type(exc).__name__}: {exc} at "
                    f"{where}). This is not your fault; please report it."
                )
            finally:
                torch.set_num_threads(threads)
        raise error.with_traceback(None)

    return wrapper  # type: ignore[return-value]


LearnerGrads = Callable[[dict[str, np.ndarray], dict[str, Any], "np.ndarray | None"], Mapping[str, Any]]
LearnerOutputs = Callable[[dict[str, np.ndarray], dict[str, Any]], Mapping[str, Any]]


def _call_learner(adapter: Callable[..., Mapping[str, Any]], case: Case, name: str,
                  dout: np.ndarray | None, upstream_name: str | None
                  ) -> tuple[Mapping[str, Any], list[str]]:
    """Run the adapter on copies, catch warnings, and detect in-place modification.

    upstream_name is None for forward checks (the adapter takes inputs and extra only);
    otherwise the adapter also receives a copy of `dout` (None when there is no upstream).
    """
    given = to_copies(case.inputs)
    watched: dict[str, Any] = dict(given)
    before = snapshot(case.inputs)
    args: list[Any] = [given, dict(case.extra)]
    if upstream_name is not None:
        given_dout = None if dout is None else dout.copy()
        args.append(given_dout)
        if dout is not None:
            watched[upstream_name] = given_dout
            before[upstream_name] = dout.copy()
    with quiet() as warnings_seen:
        result = adapter(*args)
    assert_unmodified(before, watched, name)
    if not isinstance(result, Mapping):
        raise CheckError(f"{name}: the check's adapter returned {type(result).__name__}")
    return result, warnings_seen


def _fail(name: str, headline: str, diag: Diagnosis | None, case: Case,
          rows: dict[str, tuple[tuple[int, ...], Comparison]], bad: str, seed: int,
          warnings_seen: list[str]) -> CheckFailed:
    return CheckFailed(failure(name, headline, diag, case.describe(), rows,
                               worst_entries(bad, rows[bad][1]), seed, warnings_seen))


def _hypothesis_values(hypotheses: Sequence[Hypothesis], compute: Callable[[Hypothesis], Any],
                       key: str, got: Mapping[str, np.ndarray] | None = None,
                       bad: Sequence[str] = ()) -> dict[str, tuple[str, np.ndarray | None]]:
    """What each hypothesised bug would produce for `key` (skipping any that cannot run).

    Hypotheses that reproduce *every* mismatching array in `bad` come first, so that a bug
    explaining the whole failure wins over one that explains only the first array.
    """
    computed = []
    for h in hypotheses:
        try:
            values = compute(h)
            computed.append((h, {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}))
        except Exception:  # a hypothesis that does not apply to this case
            continue

    def explains_all(values: Mapping[str, np.ndarray]) -> bool:
        return bool(got) and len(bad) > 1 and all(
            j in values and allclose(got[j], values[j], MATCH_RTOL, MATCH_ATOL) for j in bad)

    computed.sort(key=lambda hv: not explains_all(hv[1]))
    return {h.bug: (h.hint, values.get(key)) for h, values in computed}


def check_gradients(
    name: str,
    learner: LearnerGrads,
    reference: Callable[..., Any],
    cases: Sequence[Case],
    *,
    wrt: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    upstream: bool = True,
    upstream_name: str = "dout",
    hypotheses: Sequence[Hypothesis] = (),
    device: str | None = None,
    seed: int = 0,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> CheckPassed:
    """Compare the learner's gradients with autograd and with finite differences.

    learner(inputs, extra, dout) returns {input name: gradient} for the scalar
    sum(reference(**inputs, **extra) * dout) (or reference(...) itself when upstream=False).
    `wrt` selects the inputs to differentiate (default all); `labels` names the gradients as
    the learner knows them (default "d" + input name).
    """
    dev = resolve_device(device)
    rng = np.random.default_rng(seed)
    worst_rel = worst_fd = 0.0
    used_fd = False
    for case in cases:
        names = list(wrt or case.inputs)
        label = {k: (labels or {}).get(k, f"d{k}") for k in names}
        out = references.evaluate(reference, case.inputs, case.extra)
        dout = rng.standard_normal(np.shape(out)) if upstream else None
        raw, warns = _call_learner(learner, case, name, dout, upstream_name)
        got = {}
        for k in names:
            if k not in raw:
                raise CheckError(f"{name}: the check's adapter gave no gradient for {k}")
            got[k] = as_float_array(raw[k], f"{label[k]} returned by {name}",
                                    np.shape(case.inputs[k]), case.batch)
        ref = references.autograd(reference, case.inputs, case.extra, names, dout, dev)
        fd = None
        if case.fd:
            fd = references.finite_differences(reference, case.inputs, case.extra, names, dout, rng)
            mismatch = references.fd_mismatch(fd, ref, FD_RTOL, FD_ATOL)
            if mismatch:
                raise CheckError(
                    f"{name}: the two references disagree on {label[mismatch[0]]} (autograd vs "
                    f"finite differences, relative error {mismatch[1]:.1e}) for case "
                    f"{case.describe()}, seed={seed}. This is a problem in the check, not in "
                    "your code: try another seed, and please report it."
                )
        rows = {label[k]: (np.shape(got[k]), compare(got[k], ref[k], rtol, atol)) for k in names}
        bad = [k for k in names if not rows[label[k]][1].ok]
        if bad:
            k = bad[0]

            def alt(h: Hypothesis, d: np.ndarray | None = dout, c: Case = case,
                    ns: list[str] = names) -> Any:
                return references.autograd(h.fn, c.inputs, c.extra, ns, d, dev)

            singles = {}
            if (dout is not None and case.batch and case.batch > 1 and np.ndim(dout) >= 1
                    and np.shape(dout)[0] == case.batch):
                for which, row in (("first", 0), ("last", case.batch - 1)):
                    masked = np.zeros_like(dout)
                    masked[row] = dout[row]
                    singles[which] = references.autograd(
                        reference, case.inputs, case.extra, [k], masked, dev)[k]
            diag = diagnose(got[k], ref[k], batch=case.batch,
                            hypotheses=_hypothesis_values(hypotheses, alt, k, got, bad),
                            single_samples=singles)
            headline = (f"{label[k]} does not match autograd"
                        + (f" (nor {', '.join(label[j] for j in bad[1:])})" if bad[1:] else ""))
            raise _fail(name, headline, diag, case, rows, label[k], seed, warns)
        worst_rel = max([worst_rel, *(rows[label[k]][1].max_rel for k in names)])
        if fd is not None:
            used_fd = True
            worst_fd = max(worst_fd, references.fd_max_rel(fd, got))
    what = ", ".join(dict.fromkeys(
        (labels or {}).get(k, f"d{k}") for c in cases for k in (wrt or c.inputs)))
    compared = "autograd and finite differences" if used_fd else "autograd"
    return CheckPassed(name, what, compared, len(cases), worst_rel,
                       worst_fd if used_fd else None, dev)


def check_outputs(
    name: str,
    learner: LearnerOutputs,
    reference: Callable[..., Any],
    cases: Sequence[Case],
    *,
    hypotheses: Sequence[Hypothesis] = (),
    device: str | None = None,
    seed: int = 0,
    rtol: float = RTOL,
    atol: float = ATOL,
    compared: str = "PyTorch",
) -> CheckPassed:
    """Compare the values the learner computes with a torch (or NumPy) reference.

    learner(inputs, extra) returns {label: value}; reference(**tensors, **extra) returns a
    tensor or a {label: tensor} dict with the same labels. Scalars are checked as floats.
    """
    dev = resolve_device(device)
    worst_rel = 0.0
    what: dict[str, None] = {}
    for case in cases:
        expected = references.evaluate(reference, case.inputs, case.extra, dev)
        raw, warns = _call_learner(learner, case, name, None, None)
        if not isinstance(expected, Mapping):
            expected = {next(iter(raw), "output"): expected}
        rows, got = {}, {}
        for key, exp in expected.items():
            exp = np.asarray(exp, dtype=np.float64)
            what[key] = None
            if key not in raw:
                raise CheckError(f"{name}: the check's adapter gave no value for {key}")
            where = f"{key} returned by {name}" if key != name else f"the value returned by {name}"
            value = (np.asarray(as_float(raw[key], where)) if exp.shape == ()
                     else as_float_array(raw[key], where, exp.shape, case.batch))
            got[key] = value
            rows[key] = (exp.shape, compare(value, exp, rtol, atol))
        bad = [k for k, (_, c) in rows.items() if not c.ok]
        if bad:
            k = bad[0]

            def alt(h: Hypothesis, c: Case = case, key: str = k) -> Any:
                values = references.evaluate(h.fn, c.inputs, c.extra, dev)
                return values if isinstance(values, Mapping) else {key: values}

            diag = diagnose(got[k], np.asarray(expected[k]), batch=case.batch,
                            hypotheses=_hypothesis_values(hypotheses, alt, k))
            raise _fail(name, f"{k} does not match {compared}", diag, case, rows, k, seed, warns)
        worst_rel = max([worst_rel, *(c.max_rel for _, c in rows.values())])
    return CheckPassed(name, ", ".join(what), compared, len(cases), worst_rel, None, dev)
