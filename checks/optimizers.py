"""Checks for notebook 07, the optimizers.

    from checks import optimizers as check
    check.sgd(SGD)            # likewise rmsprop(RMSProp), adagrad(AdaGrad), adam(Adam), adamw(AdamW)
    check.warmup_cosine(warmup_cosine)

An optimizer check builds the learner's optimizer for several hyper-parameter settings, feeds
it 60 steps of seeded random gradients on a dict of parameters (matrices, vectors, a (1,)
"scalar"), and compares the parameters after every step with `torch.optim` (float64, same
hyper-parameters). It reports the FIRST step and parameter where the two trajectories part.
The likely bug is named by re-running known buggy update rules (small NumPy functions below)
on the same gradients and finding the one whose trajectory the learner's reproduces.

The aliases `check.SGD`, `check.RMSProp`, `check.AdaGrad`, `check.Adam`, `check.AdamW` are
the same checks under the class names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .engine import (
    CheckError,
    CheckFailed,
    CheckPassed,
    as_float,
    as_float_array,
    call,
    compare,
    devices,
    public_check,
)
from .engine.devices import resolve_device
from .engine.diagnose import Diagnosis, diagnose
from .engine.learner import assert_unmodified, snapshot
from .engine.report import failure, worst_entries

# Trajectories must agree to float64 precision (entrywise, symmetric, see engine.compare).
RTOL = 1e-10
ATOL = 1e-12
# A buggy variant "explains" the learner's trajectory when it reproduces it this closely.
MATCH_RTOL = 1e-8
STEPS = 60

Params = dict[str, np.ndarray]
Update = Callable[[np.ndarray, np.ndarray, dict, int, dict, str], np.ndarray]


# ----------------------------------------------------------------------------------------
# Update rules in NumPy: `bug == ""` is the correct rule (it must agree with torch.optim),
# any other value re-creates one classic bug. Each takes one parameter p, its gradient g, its
# state dict, the step count t (1 at the first step) and the hyper-parameters, and returns
# the new value of p.
# ----------------------------------------------------------------------------------------

def _sgd_rule(p: np.ndarray, g: np.ndarray, s: dict, t: int, hp: dict, bug: str) -> np.ndarray:
    lr, m = hp["lr"], hp.get("momentum", 0.0)
    nesterov, wd = hp.get("nesterov", False), hp.get("weight_decay", 0.0)
    if bug not in ("no_decay", "decay_after", "decoupled"):
        g = g + wd * p
    d = g
    if m != 0 and bug != "no_momentum":
        old = s.get("buf")
        if bug == "ema":
            buf = m * (0.0 if old is None else old) + (1 - m) * g
        elif bug == "stale":
            old = np.zeros_like(g) if old is None else old
            buf = m * old + g
        else:
            buf = g.copy() if old is None else m * old + g
        s["buf"] = buf
        d = old if bug == "stale" else buf
        if nesterov and bug != "no_nesterov":
            if bug == "nesterov_no_g":
                d = m * buf
            elif bug == "nesterov_swap":
                d = buf + m * g
            else:
                d = g + m * buf
    if bug == "decay_after":
        d = d + wd * p
    if bug == "decoupled":
        p = p * (1 - lr * wd)
    return p - lr * d


def _rmsprop_rule(p: np.ndarray, g: np.ndarray, s: dict, t: int, hp: dict, bug: str) -> np.ndarray:
    lr, alpha, eps = hp["lr"], hp.get("alpha", 0.99), hp.get("eps", 1e-8)
    v = s.get("v", 0.0)
    v = (1 - alpha) * v + alpha * g * g if bug == "swap_alpha" else alpha * v + (1 - alpha) * g * g
    s["v"] = v
    if bug == "bias":
        v = v / (1 - alpha**t)
    if bug == "no_sqrt":
        denom = v + eps
    elif bug == "eps_inside":
        denom = np.sqrt(v + eps)
    else:
        denom = np.sqrt(v) + eps
    return p - lr * g / denom


def _adagrad_rule(p: np.ndarray, g: np.ndarray, s: dict, t: int, hp: dict, bug: str) -> np.ndarray:
    lr, eps = hp["lr"], hp.get("eps", 1e-10)
    old = s.get("G", np.zeros_like(g))
    G = g * g if bug == "no_accumulate" else old + g * g
    s["G"] = G
    if bug == "stale":
        G = old
    if bug == "no_sqrt":
        denom = G + eps
    elif bug == "eps_inside":
        denom = np.sqrt(G + eps)
    else:
        denom = np.sqrt(G) + eps
    return p - lr * g / denom


def _adam_core(p: np.ndarray, g: np.ndarray, s: dict, t: int, hp: dict, bug: str) -> np.ndarray:
    lr, (b1, b2), eps = hp["lr"], hp.get("betas", (0.9, 0.999)), hp.get("eps", 1e-8)
    if bug == "swap_betas":
        b1, b2 = b2, b1
    m = b1 * s.get("m", 0.0) + (1 - b1) * g
    v = b2 * s.get("v", 0.0) + (1 - b2) * g * g
    s["m"], s["v"] = m, v
    t = {"t0": t - 1, "t2": t + 1}.get(bug, t)
    bc1 = 1.0 if bug in ("no_bias", "no_bc1") else 1 - b1**t
    bc2 = 1.0 if bug in ("no_bias", "no_bc2") else 1 - b2**t
    if bug == "eps_hat":  # Kingma & Ba's "efficient" form: eps before the bias correction
        return p - lr * math.sqrt(bc2) / bc1 * m / (np.sqrt(v) + eps)
    if bug == "no_sqrt":
        denom = v / bc2 + eps
    elif bug == "eps_inside":
        denom = np.sqrt(v / bc2 + eps)
    else:
        denom = np.sqrt(v) / math.sqrt(bc2) + eps
    return p - lr * (m / bc1) / denom


def _adam_rule(p: np.ndarray, g: np.ndarray, s: dict, t: int, hp: dict, bug: str) -> np.ndarray:
    wd = hp.get("weight_decay", 0.0)
    if bug == "decoupled":
        p = p * (1 - hp["lr"] * wd)
    elif bug != "no_decay":
        g = g + wd * p
    return _adam_core(p, g, s, t, hp, bug)


def _adamw_rule(p: np.ndarray, g: np.ndarray, s: dict, t: int, hp: dict, bug: str) -> np.ndarray:
    lr, wd = hp["lr"], hp.get("weight_decay", 0.01)
    if bug == "coupled":
        g = g + wd * p
    elif bug == "decay_no_lr":
        p = p * (1 - wd)
    elif bug not in ("no_decay", "decay_after"):
        p = p * (1 - lr * wd)
    p = _adam_core(p, g, s, t, hp, bug)
    return p * (1 - lr * wd) if bug == "decay_after" else p


def simulate(rule: Update, hp: dict, params: Params, grads: list[Params], bug: str = "",
             shared_state: bool = False, count_per_key: bool = False) -> list[Params]:
    """The trajectory (parameters after each step) of an update rule, in NumPy.

    shared_state: one state dict for every parameter (the bug "state shared between keys").
    count_per_key: the step count advances once per parameter instead of once per step.
    """
    current = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    states: dict[str, dict] = {k: {} for k in params}
    shared: dict = {}
    history = []
    n = 0
    with np.errstate(all="ignore"):
        for t, grad in enumerate(grads, start=1):
            for k in current:
                n += 1
                current[k] = rule(current[k], grad[k], shared if shared_state else states[k],
                                  n if count_per_key else t, hp, bug)
            history.append({k: v.copy() for k, v in current.items()})
    return history


# ----------------------------------------------------------------------------------------
# The optimizers: hyper-parameter settings, torch counterpart, known bugs.
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bug:
    """A classic bug: `code` selects the variant of the NumPy rule; `bug` and `hint` are shown."""

    code: str
    bug: str
    hint: str
    shared_state: bool = False
    count_per_key: bool = False


_SHARED = Bug("", "the optimizer state is shared between parameters (one buffer for every key)",
              "Keep the state per key, e.g. self.state = {} and self.state[k] = ... inside "
              "`for k in params:`; every parameter has its own buffers.", shared_state=True)
_NO_UPDATE = ("the parameters did not change",
              "step() must change the caller's arrays in place: params[k] -= lr * g (or "
              "params[k][...] = new_value). Rebinding a local name (p = p - ...) or returning "
              "a new dict leaves the caller's parameters as they were.")


@dataclass(frozen=True)
class Spec:
    name: str            # the learner's class name
    torch_name: str      # the torch.optim class
    rule: Update
    settings: tuple[dict, ...]
    bugs: tuple[Bug, ...]
    torch_defaults: dict  # hyper-parameters torch needs to match the pinned defaults


_BIAS_T_HINT = ("m̂_t = m_t / (1 − β₁ᵗ) and v̂_t = v_t / (1 − β₂ᵗ) with t = 1 at the first step: "
                "increment the step count once per call to step(), before the update.")

_ADAM_BUGS = (
    Bug("no_bias", "no bias correction (m and v used as they are)",
        "Early on m_t and v_t are biased towards 0 (they start at 0): divide by (1 − β₁ᵗ) and "
        "(1 − β₂ᵗ). " + _BIAS_T_HINT),
    Bug("t0", "bias correction with the step count starting at 0 (1 − β⁰ = 0 at the first step)",
        _BIAS_T_HINT),
    Bug("t2", "bias correction with the step count off by one (t = 2 at the first step)",
        _BIAS_T_HINT),
    Bug("", "the step count advances once per parameter instead of once per step",
        "t counts calls to step(), not parameters: increment it once per step (or keep one "
        "count per key, as torch does).", count_per_key=True),
    Bug("no_bc1", "bias correction of m is missing (only v is corrected)", _BIAS_T_HINT),
    Bug("no_bc2", "bias correction of v is missing (only m is corrected)", _BIAS_T_HINT),
    Bug("eps_inside", "eps inside the square root: sqrt(v̂ + eps)",
        "torch adds eps outside the root: m̂ / (sqrt(v̂) + eps)."),
    Bug("eps_hat", "eps added before the bias correction (the paper's 'efficient' form "
        "lr·sqrt(1 − β₂ᵗ)/(1 − β₁ᵗ) · m / (sqrt(v) + eps))",
        "torch divides first and adds eps last: m̂ / (sqrt(v̂) + eps) with v̂ = v / (1 − β₂ᵗ)."),
    Bug("no_sqrt", "the square root is missing: m̂ / (v̂ + eps)",
        "v̂ estimates the mean of g², so its square root is the gradient's scale: "
        "m̂ / (sqrt(v̂) + eps)."),
    Bug("swap_betas", "β₁ and β₂ swapped", "m = β₁·m + (1 − β₁)·g (β₁ = 0.9), "
        "v = β₂·v + (1 − β₂)·g² (β₂ = 0.999)."),
    _SHARED,
)

_SPECS: dict[str, Spec] = {
    "SGD": Spec(
        "SGD", "SGD", _sgd_rule,
        ({"lr": 0.1}, {"lr": 0.05, "momentum": 0.9}, {"lr": 0.05, "momentum": 0.9, "nesterov": True},
         {"lr": 0.1, "weight_decay": 0.3}, {"lr": 0.02, "momentum": 0.8, "weight_decay": 0.1},
         {"lr": 0.03, "momentum": 0.7, "nesterov": True, "weight_decay": 0.2}),
        (Bug("no_momentum", "momentum is ignored (plain SGD steps)",
             "With momentum: buf = momentum·buf + g (buf = g at the first step), then "
             "p -= lr·buf."),
         Bug("ema", "momentum as an average: buf = momentum·buf + (1 − momentum)·g, started "
             "from 0", "torch.optim.SGD (dampening 0) uses buf = momentum·buf + g, with buf = g "
             "at the first step: no (1 − momentum) factor."),
         Bug("stale", "the momentum buffer starts at zero and the step uses it before g is "
             "added (the first step does not move)",
             "Update the buffer first (buf = g at the first step, then buf = momentum·buf + g), "
             "then step with the new buffer."),
         Bug("no_nesterov", "nesterov=True is ignored (plain momentum step)",
             "With Nesterov the step is g + momentum·buf (using the updated buf)."),
         Bug("nesterov_no_g", "Nesterov step without the gradient: momentum·buf",
             "The Nesterov step is g + momentum·buf: the gradient plus the look-ahead."),
         Bug("nesterov_swap", "Nesterov step buf + momentum·g (roles swapped)",
             "The Nesterov step is g + momentum·buf."),
         Bug("no_decay", "weight decay is ignored",
             "SGD's weight decay adds weight_decay·p to the gradient, before momentum: "
             "g = g + weight_decay·p."),
         Bug("decay_after", "weight decay added to the step after momentum, not to the gradient",
             "Add weight_decay·p to the gradient first (g = g + weight_decay·p); momentum then "
             "accumulates the decayed gradient."),
         Bug("decoupled", "weight decay decoupled (p *= 1 − lr·weight_decay), as in AdamW",
             "torch.optim.SGD adds weight_decay·p to the gradient (L2), before momentum."),
         _SHARED),
        {}),
    "RMSProp": Spec(
        "RMSProp", "RMSprop", _rmsprop_rule,
        ({"lr": 0.01}, {"lr": 0.003, "alpha": 0.9}, {"lr": 0.01, "alpha": 0.95, "eps": 1e-4}),
        (Bug("no_sqrt", "the square root is missing: g / (v + eps)",
             "v averages g², so sqrt(v) is the gradient's scale: p -= lr·g / (sqrt(v) + eps)."),
         Bug("eps_inside", "eps inside the square root: sqrt(v + eps)",
             "torch adds eps outside the root: sqrt(v) + eps."),
         Bug("swap_alpha", "alpha and 1 − alpha swapped: v = (1 − alpha)·v + alpha·g²",
             "v = alpha·v + (1 − alpha)·g² (alpha = 0.99 keeps 99 % of the old average)."),
         Bug("bias", "a bias correction v / (1 − alphaᵗ) (torch's RMSprop has none)",
             "RMSProp uses v as it is: p -= lr·g / (sqrt(v) + eps)."),
         _SHARED),
        {"momentum": 0.0, "centered": False}),
    "AdaGrad": Spec(
        "AdaGrad", "Adagrad", _adagrad_rule,
        ({"lr": 0.1}, {"lr": 0.5, "eps": 1e-6}, {"lr": 0.05}),
        (Bug("no_sqrt", "the square root is missing: g / (G + eps)",
             "G sums g², so sqrt(G) is the gradient's scale: p -= lr·g / (sqrt(G) + eps)."),
         Bug("eps_inside", "eps inside the square root: sqrt(G + eps)",
             "torch adds eps outside the root: sqrt(G) + eps."),
         Bug("no_accumulate", "the sum of squares is overwritten (G = g²) instead of "
             "accumulated (G += g²)", "AdaGrad's G is the sum of every past g²: G = G + g²."),
         Bug("stale", "the step uses the sum of squares before adding the current g²",
             "Add g² to G first, then divide by sqrt(G) + eps."),
         _SHARED),
        {"lr_decay": 0.0, "weight_decay": 0.0, "initial_accumulator_value": 0.0}),
    "Adam": Spec(
        "Adam", "Adam", _adam_rule,
        ({"lr": 0.01}, {"lr": 0.1, "betas": (0.8, 0.99)}, {"lr": 0.05, "eps": 1e-3},
         {"lr": 0.05, "weight_decay": 0.1}),
        (*_ADAM_BUGS,
         Bug("no_decay", "weight decay is ignored",
             "Adam's weight_decay is L2: add weight_decay·p to the gradient before the moments."),
         Bug("decoupled", "weight decay decoupled (p *= 1 − lr·weight_decay): that is AdamW",
             "torch.optim.Adam adds weight_decay·p to the gradient (L2); only AdamW decouples "
             "it.")),
        {"amsgrad": False}),
    "AdamW": Spec(
        "AdamW", "AdamW", _adamw_rule,
        ({"lr": 0.01}, {"lr": 0.05, "weight_decay": 0.1}, {"lr": 0.1, "betas": (0.8, 0.99),
                                                           "weight_decay": 0.3, "eps": 1e-3}),
        (Bug("coupled", "weight decay coupled into the gradient (Adam's L2), not decoupled",
             "AdamW shrinks the weights directly, outside the adaptive step: "
             "p *= 1 − lr·weight_decay, then the Adam step with the raw gradient."),
         Bug("no_decay", "weight decay is ignored",
             "AdamW first shrinks each weight: p *= 1 − lr·weight_decay (default 0.01)."),
         Bug("decay_no_lr", "decay without the learning rate: p *= 1 − weight_decay",
             "torch's AdamW multiplies by 1 − lr·weight_decay."),
         Bug("decay_after", "the decay is applied after the Adam step instead of before",
             "torch shrinks first (p *= 1 − lr·weight_decay) and then takes the Adam step."),
         *_ADAM_BUGS),
        {"amsgrad": False}),
}


# ----------------------------------------------------------------------------------------
# The trajectory check.
# ----------------------------------------------------------------------------------------

def _problem(rng: np.random.Generator, same_shapes: bool) -> tuple[Params, list[Params], str]:
    """Initial parameters and STEPS gradients (seeded).

    same_shapes: two weight matrices of one shape (a shared state then gives numbers, not a
    crash). Otherwise matrices, a vector and a (1,) "scalar"; the (1,) parameter gets tiny
    gradients (~1e-7) so that where eps sits (inside or outside the root) shows.
    """
    if same_shapes:
        shapes = {"W1": ((3, 4), 1.0), "W2": ((3, 4), 0.3)}
        label = "two parameters of the same shape"
    else:
        shapes = {"W1": ((4, 3), 1.0), "b1": ((4,), 0.1), "W2": ((1, 4), 3.0), "b2": ((1,), 1e-7)}
        label = "mixed shapes, tiny gradients for b2"
    params = {k: rng.normal(size=shape) for k, (shape, _) in shapes.items()}
    drift = {k: rng.normal(size=shape) for k, (shape, _) in shapes.items()}
    grads = [{k: scale * (0.5 * drift[k] + rng.normal(size=shape))
              for k, (shape, scale) in shapes.items()} for _ in range(STEPS)]
    return params, grads, label


def _torch_trajectory(spec: Spec, hp: dict, params: Params, grads: list[Params],
                      device: str) -> list[Params]:
    """The parameters after each step of torch.optim.<spec.torch_name>, float64."""
    dev = devices.torch_device(device)
    tensors = {k: torch.tensor(v, dtype=torch.float64, device=dev, requires_grad=True)
               for k, v in params.items()}
    opt = getattr(torch.optim, spec.torch_name)(list(tensors.values()),
                                                **{**spec.torch_defaults, **hp})
    history = []
    for grad in grads:
        for k, t in tensors.items():
            t.grad = torch.tensor(grad[k], dtype=torch.float64, device=dev)
        opt.step()
        history.append({k: t.detach().cpu().numpy().copy() for k, t in tensors.items()})
    return history


def _describe(name: str, hp: dict) -> str:
    args = [repr(hp["lr"])] + [f"{k}={v!r}" for k, v in hp.items() if k != "lr"]
    return f"{name}({', '.join(args)})"


def _stack(history: list[Params], n: int) -> np.ndarray:
    return np.concatenate([np.ravel(h[k]) for h in history[:n] for k in sorted(h)])


def distance(a: list[Params], b: list[Params]) -> float:
    """The largest entrywise relative difference between two trajectories (first len(a) steps).

    Entries that are NaN/inf in both (at the same place, same value) count as equal.
    """
    n = min(len(a), len(b))
    if n == 0:
        return math.inf
    s, r = _stack(a, n), _stack(b, n)
    same = ~np.isfinite(s) & ~np.isfinite(r) & ((s == r) | (np.isnan(s) & np.isnan(r)))
    s, r = np.where(same, 0.0, s), np.where(same, 0.0, r)
    return compare(s, r, MATCH_RTOL, 0.0).max_rel


def _explain(spec: Spec, hp: dict, params: Params, grads: list[Params],
             got: list[Params], expected: list[Params], t: int, key: str) -> Diagnosis:
    """Name the bug whose trajectory the learner's reproduces (or fall back on the engine)."""
    n = len(got)
    best: tuple[float, Bug | None] = (math.inf, None)
    for bug in spec.bugs:
        try:
            alt = simulate(spec.rule, hp, params, grads[:n], bug.code, bug.shared_state,
                           bug.count_per_key)
        except (ValueError, FloatingPointError):  # e.g. shared state across shapes
            continue
        d = distance(got, alt)
        if d < best[0]:
            best = (d, bug)
    if best[1] is not None and best[0] <= MATCH_RTOL:
        return Diagnosis(best[1].bug, best[1].hint)
    if all(np.array_equal(h[k], params[k]) for h in got for k in params):
        return Diagnosis(*_NO_UPDATE)
    # No known bug: let the engine look at the step itself (sign, constant factor, NaN).
    before = params[key] if t == 1 else got[t - 2][key]
    ref_before = params[key] if t == 1 else expected[t - 2][key]
    diag = diagnose(got[t - 1][key] - before, expected[t - 1][key] - ref_before)
    return Diagnosis(f"in the step at step {t}: {diag.bug}", diag.hint)


def _run_learner(spec: Spec, cls: Any, hp: dict, params: Params, grads: list[Params],
                 same_shapes: bool) -> tuple[list[Params], CheckFailed | None]:
    """Run the learner's optimizer for every step; return its trajectory (and a crash)."""
    name = spec.name
    kwargs = {k: v for k, v in hp.items() if k != "lr"}
    opt = call(cls, hp["lr"], **kwargs, name=name)
    step = getattr(opt, "step", None)
    if not callable(step):
        raise CheckFailed(f"{name}(...) has no step method: define `def step(self, params, "
                          "grads):` inside the class.")
    given = {k: v.copy() for k, v in params.items()}
    arrays = dict(given)  # the caller's arrays: they must be the ones that change
    history: list[Params] = []
    for t, grad in enumerate(grads, start=1):
        g = {k: v.copy() for k, v in grad.items()}
        before = snapshot(g)
        old_params = {k: np.array(v, copy=True) for k, v in arrays.items()}
        try:
            result = call(step, given, g, name=f"{name}.step")
        except CheckFailed as exc:
            text = str(exc)
            if not same_shapes and ("broadcast" in text or "shape" in text):
                text += ("\nHint: parameters of different shapes met the same buffer: is the "
                         "optimizer state shared between keys? Keep one state per key "
                         "(self.state[k]).")
            return history, CheckFailed(f"{text}\n  at step {t}, "
                                        f"{_describe(name, hp)}")
        assert_unmodified({f"grads['{k}']": v for k, v in before.items()},
                          {f"grads['{k}']": v for k, v in g.items()}, f"{name}.step")
        if (isinstance(result, Mapping) and result is not given
                and all(np.array_equal(arrays[k], old_params[k]) for k in arrays)):
            raise CheckFailed(
                f"{name}.step returned a new dict and left the caller's arrays unchanged. The "
                "caller ignores what step() returns: change the arrays in place, e.g. "
                f"params[k] -= lr * g.\n  at step {t}, {_describe(name, hp)}")
        for k, arr in arrays.items():
            if k not in given or given[k] is not arr:
                raise CheckFailed(
                    f"{name}.step replaced params['{k}'] by a new array (params[k] = ...), so "
                    "the caller's arrays did not change (a model holding them would not learn). "
                    f"Update in place: params[k] -= ... (or params[k][...] = ...).\n  at step {t}, "
                    f"{_describe(name, hp)}")
        history.append({k: as_float_array(v, f"params['{k}'] after step {t} of {name}",
                                          np.shape(params[k])).copy() for k, v in arrays.items()})
    return history, None


def _check_optimizer(spec: Spec, cls: Any, device: str | None, seed: int) -> CheckPassed:
    try:
        return _run_check(spec, cls, device, seed)
    except CheckFailed as exc:  # "✗ SGD: ..." rather than "✗ sgd: SGD: ..."
        text = str(exc)
        if text.startswith("✗"):
            raise
        raise CheckFailed(f"✗ {text}") from None


def _run_check(spec: Spec, cls: Any, device: str | None, seed: int) -> CheckPassed:
    if cls is not None and not isinstance(cls, type) and callable(getattr(cls, "step", None)):
        raise CheckFailed(f"got an instance of {type(cls).__name__}: pass the class itself, "
                          f"check.{spec.name.lower()}({spec.name}), not {spec.name}(...).")
    dev = resolve_device(device)
    worst = 0.0
    n_cases = 0
    for i, hp in enumerate(spec.settings):
        for same_shapes in (True, False):
            rng = np.random.default_rng([seed, i, int(same_shapes)])
            params, grads, label = _problem(rng, same_shapes)
            expected = _torch_trajectory(spec, hp, params, grads, dev)
            ours = simulate(spec.rule, hp, params, grads)
            if distance(ours, expected) > RTOL:
                raise CheckError(f"{spec.name}: the NumPy reference and torch.optim."
                                 f"{spec.torch_name} disagree for {_describe(spec.name, hp)}, "
                                 f"seed={seed}. This is a problem in the check, not in your "
                                 "code: please report it.")
            got, crash = _run_learner(spec, cls, hp, params, grads, same_shapes)
            case = (f"{_describe(spec.name, hp)}, {STEPS} steps of seeded random gradients; "
                    f"{label}: " + ", ".join(f"{k} {v.shape}" for k, v in params.items()))
            for t, (mine, ref) in enumerate(zip(got, expected, strict=False), start=1):
                rows = {f"params['{k}']": (ref[k].shape, compare(mine[k], ref[k], RTOL, ATOL))
                        for k in ref}
                bad = [k for k in ref if not rows[f"params['{k}']"][1].ok]
                if bad:
                    k = bad[0]
                    diag = _explain(spec, hp, params, grads, got, expected, t, k)
                    headline = (f"the trajectories part at step {t} (of {STEPS}), first in "
                                f"params['{k}'] (after step {t - 1} they agreed)"
                                if t > 1 else
                                f"the parameters differ from torch.optim.{spec.torch_name} "
                                f"after the first step, first in params['{k}']")
                    raise CheckFailed(failure(
                        spec.name, headline, diag, case, rows,
                        worst_entries(f"params['{k}'] after step {t}", rows[f"params['{k}']"][1]),
                        seed))
                worst = max([worst, *(c.max_rel for _, c in rows.values())])
            if crash is not None:
                raise crash
            n_cases += 1
    return CheckPassed(spec.name, f"parameters after each of {STEPS} steps",
                       f"torch.optim.{spec.torch_name}", n_cases, worst, None, dev)


@public_check
def sgd(SGD: Any, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `SGD(lr, momentum=0.0, nesterov=False, weight_decay=0.0)` against torch.optim.SGD."""
    return _check_optimizer(_SPECS["SGD"], SGD, device, seed)


@public_check
def rmsprop(RMSProp: Any, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `RMSProp(lr, alpha=0.99, eps=1e-8)` against torch.optim.RMSprop."""
    return _check_optimizer(_SPECS["RMSProp"], RMSProp, device, seed)


@public_check
def adagrad(AdaGrad: Any, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `AdaGrad(lr, eps=1e-10)` against torch.optim.Adagrad."""
    return _check_optimizer(_SPECS["AdaGrad"], AdaGrad, device, seed)


@public_check
def adam(Adam: Any, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `Adam(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)` against torch.optim.Adam."""
    return _check_optimizer(_SPECS["Adam"], Adam, device, seed)


@public_check
def adamw(AdamW: Any, *, device: str | None = None, seed: int = 0) -> CheckPassed:
    """Check `AdamW(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)` against torch.optim.AdamW."""
    return _check_optimizer(_SPECS["AdamW"], AdamW, device, seed)


# The same checks under the class names: check.Adam(Adam) works as well as check.adam(Adam).
SGD, RMSProp, AdaGrad, Adam, AdamW = sgd, rmsprop, adagrad, adam, adamw


# ----------------------------------------------------------------------------------------
# The learning-rate schedule: linear warm-up, then cosine decay.
# ----------------------------------------------------------------------------------------

def warmup_cosine_reference(step: int, total_steps: int, warmup_steps: int, base_lr: float,
                            min_lr: float = 0.0, bug: str = "") -> float:
    """The pinned schedule (bug == ""), or one of its classic bugs.

    step counts the optimizer steps already taken (0 for the first step).
      step < warmup_steps:                 base_lr · (step + 1) / warmup_steps
      warmup_steps <= step <= total_steps: min_lr + (base_lr − min_lr)·(1 + cos(π·p))/2,
                                           p = (step − warmup_steps) / (total_steps − warmup_steps)
      step > total_steps:                  min_lr
    """
    if step < warmup_steps:
        return base_lr * (step if bug == "warmup_from_0" else step + 1) / warmup_steps
    if step > total_steps and bug != "no_clamp":
        return min_lr
    if bug == "unshifted":
        p = step / total_steps
    elif bug == "over_total":
        p = (step - warmup_steps) / total_steps
    else:
        p = (step - warmup_steps) / (total_steps - warmup_steps)
    shape = {"linear": 1 - p, "no_pi": (1 + math.cos(p)) / 2, "no_half": 1 + math.cos(math.pi * p)}
    c = shape.get(bug, (1 + math.cos(math.pi * p)) / 2)
    if bug == "no_min":
        return base_lr * c
    if bug == "min_on_top":
        return min_lr + base_lr * c
    return min_lr + (base_lr - min_lr) * c


_SCHEDULE_BUGS = (
    ("warmup_from_0", "the warm-up starts at 0: base_lr·step/warmup_steps",
     "Step 0 would not move at all: use base_lr·(step + 1)/warmup_steps, which reaches base_lr "
     "at step warmup_steps − 1."),
    ("unshifted", "the cosine is not shifted by the warm-up: p = step / total_steps",
     "The decay starts after the warm-up: p = (step − warmup_steps)/(total_steps − warmup_steps)."),
    ("over_total", "the cosine progress divides by total_steps instead of total_steps − warmup_steps",
     "p = (step − warmup_steps)/(total_steps − warmup_steps) runs from 0 to 1 during the decay."),
    ("no_min", "min_lr is ignored (the cosine decays to 0)",
     "lr = min_lr + (base_lr − min_lr)·(1 + cos(π·p))/2."),
    ("min_on_top", "min_lr added on top: min_lr + base_lr·(1 + cos(π·p))/2",
     "Scale the cosine by (base_lr − min_lr) so that it starts at base_lr and ends at min_lr."),
    ("no_half", "the factor 1/2 is missing: (1 + cos(π·p)) instead of (1 + cos(π·p))/2",
     "(1 + cos(π·p))/2 runs from 1 to 0; without the 1/2 it starts at 2."),
    ("no_pi", "cos(p) instead of cos(π·p)", "The cosine runs over half a period: cos(π·p)."),
    ("linear", "a linear decay instead of the cosine", "Use (1 + cos(π·p))/2, not 1 − p."),
    ("no_clamp", "after total_steps the schedule rises again (the cosine was not clamped)",
     "For step > total_steps return min_lr."),
)

_SCHEDULES = ((100, 10, 0.1, 0.0), (50, 0, 1e-3, 1e-5), (37, 5, 3e-4, 3e-5), (20, 1, 1.0, 0.1))


def _torch_schedule(total: int, warmup: int, base: float, min_lr: float) -> np.ndarray:
    """lr at steps 0..total from torch's own schedulers: LinearLR then CosineAnnealingLR."""
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base)
    sched = cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup,
                                                                eta_min=min_lr)
    if warmup:
        linear = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / warmup, end_factor=1.0,
                                                   total_iters=max(warmup - 1, 0))
        sched = torch.optim.lr_scheduler.SequentialLR(opt, [linear, cosine], milestones=[warmup])
    out = []
    for _ in range(total + 1):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out)


@public_check
def warmup_cosine(warmup_cosine: Callable, *, device: str | None = None,
                  seed: int = 0) -> CheckPassed:
    """Check `warmup_cosine(step, total_steps, warmup_steps, base_lr, min_lr=0.0)`.

    Compared at every step 0..total_steps + 5 with torch's LinearLR + CosineAnnealingLR chained
    by SequentialLR (and with the closed form beyond total_steps, where lr stays at min_lr).
    """
    dev = resolve_device(device)
    worst = 0.0
    for total, warmup, base, min_lr in _SCHEDULES:
        steps = range(total + 6)
        expected = np.array([warmup_cosine_reference(s, total, warmup, base, min_lr) for s in steps])
        torch_lrs = _torch_schedule(total, warmup, base, min_lr)
        if not compare(expected[: total + 1], torch_lrs, RTOL, ATOL).ok:
            raise CheckError("warmup_cosine: the closed form and torch's schedulers disagree; "
                             "this is a problem in the check, please report it.")
        args = (dict(total_steps=total, warmup_steps=warmup, base_lr=base)
                | ({"min_lr": min_lr} if min_lr else {}))
        got = np.array([as_float(call(warmup_cosine, s, **args, name="warmup_cosine"),
                                 f"the value returned by warmup_cosine at step {s}") for s in steps])
        c = compare(got, expected, RTOL, ATOL)
        if not c.ok:
            first = int(np.argmax(~np.isclose(got, expected, rtol=RTOL, atol=ATOL * np.max(expected))
                                  | ~np.isfinite(got)))
            # Bugs inside the schedule are matched on steps 0..total_steps − 1 (what a buggy
            # version does at and after the end varies); a difference only after the end is
            # matched on every step.
            n = total if first < total else len(got)
            hyps = {}
            for code, bug, hint in _SCHEDULE_BUGS:
                try:
                    with np.errstate(all="ignore"):
                        hyps[bug] = (hint, np.array([warmup_cosine_reference(
                            s, total, warmup, base, min_lr, code) for s in steps][:n]))
                except ZeroDivisionError:
                    continue
            diag = diagnose(got[:n], expected[:n], hypotheses=hyps)
            label = (f"warmup_cosine(step, total_steps={total}, warmup_steps={warmup}, "
                     f"base_lr={base}" + (f", min_lr={min_lr}" if min_lr else "") + ") for step = 0.."
                     f"{total + 5}")
            raise CheckFailed(failure(
                "warmup_cosine", f"the learning rate differs first at step {first} "
                f"(yours {got[first]:.6g}, expected {expected[first]:.6g})", diag, label,
                {"lr": ((len(got),), c)}, worst_entries("lr (index = step)", c), seed))
        worst = max(worst, c.max_rel)
    return CheckPassed("warmup_cosine", "learning rates at every step",
                       "torch.optim.lr_scheduler (LinearLR → CosineAnnealingLR)", len(_SCHEDULES),
                       worst, None, dev)
