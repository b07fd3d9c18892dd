"""Tests for checks.optimizers (notebook 07): correct optimizers in several styles pass,
classic bugs are rejected with the right diagnosis, bad behaviour gets a clear message, and
the checks' references agree with torch.optim to float64 precision."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from checks import CheckError, CheckFailed
from checks import optimizers as check
from checks.engine import devices
from checks.optimizers import _SPECS, STEPS, _problem, _torch_trajectory, distance, simulate

# ------------------------------------------------------------------------------------------
# Correct implementations, in different styles
# ------------------------------------------------------------------------------------------


class SGD:
    """Per-key dict state, buffer initialised to the first gradient (as torch)."""

    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        self.lr, self.momentum, self.nesterov, self.weight_decay = lr, momentum, nesterov, weight_decay
        self.buf = {}

    def step(self, params, grads):
        for k, p in params.items():
            g = grads[k] + self.weight_decay * p
            if self.momentum:
                self.buf[k] = g.copy() if k not in self.buf else self.momentum * self.buf[k] + g
                g = g + self.momentum * self.buf[k] if self.nesterov else self.buf[k]
            p -= self.lr * g


class SGDZeroBuffer:
    """Velocity starting at zeros and updated in place: with dampening 0 this equals torch."""

    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        self.lr, self.mu, self.nesterov, self.wd = lr, momentum, nesterov, weight_decay
        self.state = {}

    def step(self, params, grads):
        for name in params:
            p, g = params[name], grads[name]
            d = g + self.wd * p if self.wd else g.copy()
            if self.mu:
                v = self.state.setdefault(name, np.zeros_like(p))
                v *= self.mu
                v += d
                d = d + self.mu * v if self.nesterov else v
            np.subtract(p, self.lr * d, out=p)


class RMSProp:
    def __init__(self, lr, alpha=0.99, eps=1e-8):
        self.lr, self.alpha, self.eps = lr, alpha, eps
        self.v = {}

    def step(self, params, grads):
        for k, p in params.items():
            g = grads[k]
            self.v[k] = self.alpha * self.v.get(k, 0.0) + (1 - self.alpha) * g * g
            p -= self.lr * g / (np.sqrt(self.v[k]) + self.eps)


class RMSPropInPlace:
    def __init__(self, lr, alpha=0.99, eps=1e-8):
        self.lr, self.alpha, self.eps, self.sq = lr, alpha, eps, {}

    def step(self, params, grads):
        for k in params:
            sq = self.sq.setdefault(k, np.zeros_like(params[k]))
            sq *= self.alpha
            sq += (1 - self.alpha) * np.square(grads[k])
            params[k][...] = params[k] - self.lr * grads[k] / (sq**0.5 + self.eps)


class AdaGrad:
    def __init__(self, lr, eps=1e-10):
        self.lr, self.eps, self.G = lr, eps, {}

    def step(self, params, grads):
        for k, p in params.items():
            self.G[k] = self.G.get(k, 0.0) + grads[k] ** 2
            p -= self.lr * grads[k] / (np.sqrt(self.G[k]) + self.eps)


class Adam:
    """One step count per call, moment dicts."""

    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.m, self.v, self.t = {}, {}, 0

    def _grad(self, p, g):
        return g + self.weight_decay * p

    def step(self, params, grads):
        self.t += 1
        b1, b2 = self.betas
        for k, p in params.items():
            g = self._grad(p, grads[k])
            self.m[k] = b1 * self.m.get(k, 0.0) + (1 - b1) * g
            self.v[k] = b2 * self.v.get(k, 0.0) + (1 - b2) * g * g
            m_hat = self.m[k] / (1 - b1**self.t)
            v_hat = self.v[k] / (1 - b2**self.t)
            p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class AdamW(Adam):
    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(lr, betas, eps, weight_decay)

    def _grad(self, p, g):
        p *= 1 - self.lr * self.weight_decay
        return g


class AdamPerKeyState:
    """torch's layout: a state dict per key with its own step count; step_size/denom form."""

    decoupled = False

    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.lr, self.b1, self.b2, self.eps, self.wd = lr, betas[0], betas[1], eps, weight_decay
        self.state = {}

    def step(self, params, grads):
        for k, p in params.items():
            s = self.state.setdefault(k, {"step": 0, "m": np.zeros_like(p), "v": np.zeros_like(p)})
            g = grads[k]
            if self.decoupled:
                p *= 1 - self.lr * self.wd
            elif self.wd:
                g = g + self.wd * p
            s["step"] += 1
            s["m"] += (1 - self.b1) * (g - s["m"])
            s["v"] = self.b2 * s["v"] + (1 - self.b2) * g * g
            step_size = self.lr / (1 - self.b1 ** s["step"])
            denom = np.sqrt(s["v"]) / math.sqrt(1 - self.b2 ** s["step"]) + self.eps
            p -= step_size * s["m"] / denom


class AdamWPerKeyState(AdamPerKeyState):
    decoupled = True

    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(lr, betas, eps, weight_decay)


def warmup_cosine(step, total_steps, warmup_steps, base_lr, min_lr=0.0):
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    p = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * p))


def warmup_cosine_numpy(step, total_steps, warmup_steps, base_lr, min_lr=0.0):
    warm = base_lr * min(step + 1, max(warmup_steps, 1)) / max(warmup_steps, 1)
    progress = np.clip((step - warmup_steps) / (total_steps - warmup_steps), 0.0, 1.0)
    cosine = min_lr + (base_lr - min_lr) * (np.cos(np.pi * progress) + 1) / 2
    return float(np.where(step < warmup_steps, warm, cosine))


CORRECT = [
    (check.sgd, SGD), (check.sgd, SGDZeroBuffer), (check.SGD, SGD),
    (check.rmsprop, RMSProp), (check.rmsprop, RMSPropInPlace), (check.RMSProp, RMSProp),
    (check.adagrad, AdaGrad), (check.AdaGrad, AdaGrad),
    (check.adam, Adam), (check.adam, AdamPerKeyState), (check.Adam, Adam),
    (check.adamw, AdamW), (check.adamw, AdamWPerKeyState), (check.AdamW, AdamW),
    (check.warmup_cosine, warmup_cosine), (check.warmup_cosine, warmup_cosine_numpy),
]


@pytest.mark.parametrize("fn, impl", CORRECT, ids=lambda x: getattr(x, "__name__", str(x)))
def test_correct_implementations_pass(fn, impl):
    result = fn(impl)
    assert result
    assert result.max_rel < 1e-10
    assert "✓" in str(result)


@pytest.mark.parametrize("fn, impl, torch_name", [
    (check.sgd, SGD, "SGD"), (check.rmsprop, RMSProp, "RMSprop"), (check.adagrad, AdaGrad, "Adagrad"),
    (check.adam, Adam, "Adam"), (check.adamw, AdamW, "AdamW")])
def test_all_five_match_torch_to_float64_precision(fn, impl, torch_name):
    result = fn(impl, seed=3)
    assert STEPS >= 50
    assert f"torch.optim.{torch_name}" in str(result)
    assert result.n_cases >= 3
    assert result.max_rel < 1e-11


@pytest.mark.parametrize("name", list(_SPECS))
@pytest.mark.parametrize("seed", [0, 1])
def test_numpy_references_match_torch_for_every_setting(name, seed):
    spec = _SPECS[name]
    for i, hp in enumerate(spec.settings):
        for same in (True, False):
            params, grads, _ = _problem(np.random.default_rng([seed, i, int(same)]), same)
            ours = simulate(spec.rule, hp, params, grads)
            theirs = _torch_trajectory(spec, hp, params, grads, "cpu")
            assert len(ours) == STEPS
            assert distance(ours, theirs) < 1e-10


def test_pinned_defaults_match_torch():
    spec = _SPECS["AdamW"]
    params, grads, _ = _problem(np.random.default_rng(0), False)
    # AdamW's default weight decay is 0.01, and the check's lr-only setting uses it.
    assert torch.optim.AdamW([torch.zeros(1)]).defaults["weight_decay"] == 0.01
    plain = simulate(spec.rule, {"lr": 0.01}, params, grads)
    explicit = simulate(spec.rule, {"lr": 0.01, "weight_decay": 0.01}, params, grads)
    assert distance(plain, explicit) == 0.0


# ------------------------------------------------------------------------------------------
# Mutants: each classic bug, rejected with its diagnosis
# ------------------------------------------------------------------------------------------


def sgd_mutant(bug):
    class Mutant(SGD):
        def step(self, params, grads):
            for k, p in params.items():
                g = grads[k] if bug in ("no_decay", "decay_after", "decoupled") else grads[k] + self.weight_decay * p
                if self.momentum:
                    old = self.buf.get(k)
                    if bug == "zero_ema":
                        self.buf[k] = self.momentum * self.buf.get(k, 0.0) + (1 - self.momentum) * g
                    elif bug == "stale":  # zero buffer, used before g is added
                        old = self.buf.get(k, np.zeros_like(p))
                        self.buf[k] = self.momentum * old + g
                    else:
                        self.buf[k] = g.copy() if old is None else self.momentum * old + g
                    if bug == "no_momentum":
                        d = g
                    elif bug == "stale":
                        d = old
                    elif self.nesterov and bug == "nesterov_swap":
                        d = self.buf[k] + self.momentum * g
                    elif self.nesterov and bug == "nesterov_ignored":
                        d = self.buf[k]
                    elif self.nesterov and bug == "nesterov_no_g":
                        d = self.momentum * self.buf[k]
                    elif self.nesterov:
                        d = g + self.momentum * self.buf[k]
                    else:
                        d = self.buf[k]
                else:
                    d = g
                if bug == "decay_after":
                    d = d + self.weight_decay * p
                if bug == "decoupled":
                    p *= 1 - self.lr * self.weight_decay
                p -= self.lr * d
    return Mutant


class SGDSharedBuffer(SGD):
    def step(self, params, grads):
        for k, p in params.items():
            g = grads[k] + self.weight_decay * p
            if self.momentum:
                self.shared = g.copy() if not hasattr(self, "shared") else self.momentum * self.shared + g
                g = g + self.momentum * self.shared if self.nesterov else self.shared
            p -= self.lr * g


def adam_mutant(bug, base=Adam):
    class Mutant(base):
        def step(self, params, grads):
            self.t += 1
            t = {"t0": self.t - 1, "t2": self.t + 1}.get(bug, self.t)
            b1, b2 = self.betas[::-1] if bug == "swap_betas" else self.betas
            for k, p in params.items():
                g = self._grad(p, grads[k])
                if bug == "per_key_count":
                    self._n = getattr(self, "_n", 0) + 1
                    t = self._n
                self.m[k] = b1 * self.m.get(k, 0.0) + (1 - b1) * g
                self.v[k] = b2 * self.v.get(k, 0.0) + (1 - b2) * g * g
                if bug == "no_bias":
                    m_hat, v_hat = self.m[k], self.v[k]
                else:
                    m_hat, v_hat = self.m[k] / (1 - b1**t), self.v[k] / (1 - b2**t)
                if bug == "eps_inside":
                    denom = np.sqrt(v_hat + self.eps)
                elif bug == "no_sqrt":
                    denom = v_hat + self.eps
                else:
                    denom = np.sqrt(v_hat) + self.eps
                if bug == "eps_hat":
                    lr_t = self.lr * math.sqrt(1 - b2**t) / (1 - b1**t)
                    p -= lr_t * self.m[k] / (np.sqrt(self.v[k]) + self.eps)
                else:
                    p -= self.lr * m_hat / denom
    return Mutant


class AdamWCoupled(Adam):  # Adam's L2 under AdamW's name
    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(lr, betas, eps, weight_decay)


class AdamWNoLr(AdamW):
    def _grad(self, p, g):
        p *= 1 - self.weight_decay
        return g


class AdamDecoupled(AdamW):  # AdamW's decay under Adam's name
    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(lr, betas, eps, weight_decay)


class AdamWDecayAfter(AdamW):
    def _grad(self, p, g):
        return g

    def step(self, params, grads):
        super().step(params, grads)
        for p in params.values():
            p *= 1 - self.lr * self.weight_decay


class AdamWNoDecay(AdamW):
    def _grad(self, p, g):
        return g


class AdamNoDecay(Adam):
    def _grad(self, p, g):
        return g


class AdamShared(Adam):
    def step(self, params, grads):
        self.t += 1
        b1, b2 = self.betas
        for p, g in zip(params.values(), grads.values(), strict=True):
            g = self._grad(p, g)
            self.mm = b1 * getattr(self, "mm", 0.0) + (1 - b1) * g
            self.vv = b2 * getattr(self, "vv", 0.0) + (1 - b2) * g * g
            p -= self.lr * (self.mm / (1 - b1**self.t)) / (np.sqrt(self.vv / (1 - b2**self.t)) + self.eps)


def rms_mutant(bug):
    class Mutant(RMSProp):
        def step(self, params, grads):
            for k, p in params.items():
                g = grads[k]
                a = 1 - self.alpha if bug == "swap" else self.alpha
                self.v[k] = a * self.v.get(k, 0.0) + (1 - a) * g * g
                self.t = getattr(self, "t", 0) + (k == next(iter(params)))
                v = self.v[k] / (1 - self.alpha**self.t) if bug == "bias" else self.v[k]
                denom = {"no_sqrt": v + self.eps,
                         "eps_inside": np.sqrt(v + self.eps)}.get(bug, np.sqrt(v) + self.eps)
                p -= self.lr * g / denom
    return Mutant


def adagrad_mutant(bug):
    class Mutant(AdaGrad):
        def step(self, params, grads):
            for k, p in params.items():
                g = grads[k]
                old = self.G.get(k, 0.0)
                self.G[k] = g * g if bug == "overwrite" else old + g * g
                G = old if bug == "stale" else self.G[k]
                denom = {"no_sqrt": G + self.eps,
                         "eps_inside": np.sqrt(G + self.eps)}.get(bug, np.sqrt(G) + self.eps)
                p -= self.lr * g / denom
    return Mutant


MUTANTS = [
    (check.sgd, sgd_mutant("no_momentum"), "momentum is ignored"),
    (check.sgd, sgd_mutant("zero_ema"), r"momentum as an average.*started from 0"),
    (check.sgd, sgd_mutant("nesterov_ignored"), "nesterov=True is ignored"),
    (check.sgd, sgd_mutant("nesterov_no_g"), "Nesterov step without the gradient"),
    (check.sgd, sgd_mutant("no_decay"), "weight decay is ignored"),
    (check.sgd, sgd_mutant("decay_after"), "weight decay added to the step after momentum"),
    (check.sgd, SGDSharedBuffer, "state is shared between parameters"),
    (check.sgd, sgd_mutant("stale"), "buffer starts at zero and the step uses it before"),
    (check.sgd, sgd_mutant("nesterov_swap"), r"Nesterov step buf \+ momentum·g"),
    (check.sgd, sgd_mutant("decoupled"), "weight decay decoupled"),
    (check.rmsprop, rms_mutant("bias"), "bias correction v / \\(1 − alphaᵗ\\)"),
    (check.adagrad, adagrad_mutant("stale"), "before adding the current g²"),
    (check.adam, adam_mutant("swap_betas"), "β₁ and β₂ swapped"),
    (check.adamw, AdamWDecayAfter, "after the Adam step"),
    (check.adamw, AdamWNoDecay, "weight decay is ignored"),
    (check.adamw, adam_mutant("eps_inside", AdamW), "eps inside the square root"),
    (check.rmsprop, rms_mutant("no_sqrt"), "square root is missing"),
    (check.rmsprop, rms_mutant("eps_inside"), "eps inside the square root"),
    (check.rmsprop, rms_mutant("swap"), "alpha and 1 − alpha swapped"),
    (check.adagrad, adagrad_mutant("no_sqrt"), "square root is missing"),
    (check.adagrad, adagrad_mutant("eps_inside"), "eps inside the square root"),
    (check.adagrad, adagrad_mutant("overwrite"), "overwritten"),
    (check.adam, adam_mutant("no_bias"), "no bias correction"),
    (check.adam, adam_mutant("t0"), "step count starting at 0"),
    (check.adam, adam_mutant("t2"), "off by one"),
    (check.adam, adam_mutant("per_key_count"), "once per parameter"),
    (check.adam, adam_mutant("eps_inside"), "eps inside the square root"),
    (check.adam, adam_mutant("eps_hat"), "eps added before the bias correction"),
    (check.adam, adam_mutant("no_sqrt"), "square root is missing"),
    (check.adam, AdamDecoupled, "decoupled.*that is AdamW"),
    (check.adam, AdamNoDecay, "weight decay is ignored"),
    (check.adam, AdamShared, "state is shared between parameters"),
    (check.adamw, AdamWCoupled, r"coupled into the gradient \(Adam's L2\)"),
    (check.adamw, AdamWNoLr, "without the learning rate"),
    (check.adamw, adam_mutant("no_bias", AdamW), "no bias correction"),
    (check.adamw, adam_mutant("t0", AdamW), "step count starting at 0"),
]


@pytest.mark.parametrize("fn, mutant, diagnosis", MUTANTS, ids=[m[2][:30] for m in MUTANTS])
def test_mutants_rejected_with_diagnosis(fn, mutant, diagnosis):
    with pytest.raises(CheckFailed, match=f"Likely bug: .*{diagnosis}") as info:
        fn(mutant)
    text = str(info.value)
    assert "step" in text and "params['" in text       # names the step and the parameter
    assert "seed=0" in text


def test_first_divergence_step_is_reported():
    # Off-by-one bias correction differs from the first step; nesterov_old from step 1 too,
    # but a bug that only appears later must be located there.
    class LateBug(SGD):
        def step(self, params, grads):
            self.n = getattr(self, "n", 0) + 1
            super().step(params, grads)
            if self.n == 17:
                params["W1"][0, 0] += 1e-3
    with pytest.raises(CheckFailed, match=r"trajectories part at step 17 \(of 60\), first in "
                                          r"params\['W1'\]") as info:
        check.sgd(LateBug)
    assert "(0, 0)" in str(info.value)


def test_sign_flip_is_diagnosed_from_the_step():
    class Ascent(SGD):
        def step(self, params, grads):
            for k, p in params.items():
                p += self.lr * grads[k]
    with pytest.raises(CheckFailed, match="sign flipped"):
        check.sgd(Ascent)


# ------------------------------------------------------------------------------------------
# Bad behaviour and bad inputs
# ------------------------------------------------------------------------------------------


class Rebinding(SGD):
    def step(self, params, grads):
        for k in params:
            params[k] = params[k] - self.lr * grads[k]


class LocalOnly(SGD):
    def step(self, params, grads):
        for k, p in params.items():
            p = p - self.lr * grads[k]  # noqa: F841 (the bug: a local rebinding)


class ReturnsDict(SGD):
    def step(self, params, grads):
        return {k: p - self.lr * grads[k] for k, p in params.items()}


class MutatesGrads(SGD):
    def step(self, params, grads):
        for k, p in params.items():
            grads[k] *= self.lr
            p -= grads[k]


class MakesNaN(Adam):
    def step(self, params, grads):
        super().step(params, grads)
        if self.t == 5:
            params["W2"][...] = np.nan


class Unimplemented:
    def __init__(self, lr, **kw):
        pass

    def step(self, params, grads):
        raise NotImplementedError()


class Raises(SGD):
    def step(self, params, grads):
        raise KeyError("velocity")


def test_rebinding_params_is_explained():
    with pytest.raises(CheckFailed, match=r"replaced params\['W1'\] by a new array.*"
                                          r"Update in place: params\[k\] -= "):
        check.sgd(Rebinding)


def test_no_update_at_all_is_explained():
    with pytest.raises(CheckFailed, match=r"(?s)parameters did not change.*params\[k\] -= "):
        check.sgd(LocalOnly)


def test_returning_a_dict_is_explained():
    with pytest.raises(CheckFailed, match="returned a new dict and left the caller's arrays "
                                          "unchanged.*in place"):
        check.sgd(ReturnsDict)


def test_returning_params_after_updating_in_place_is_fine():
    class ReturnsParams(SGD):
        def step(self, params, grads):
            super().step(params, grads)
            return params
    assert check.sgd(ReturnsParams)


def test_modifying_grads_is_explained():
    with pytest.raises(CheckFailed, match=r"modified its input `grads\['W1'\]` in place"):
        check.sgd(MutatesGrads)


def test_nan_is_explained():
    with pytest.raises(CheckFailed, match=r"(?s)step 5 .*params\['W2'\].*NaN"):
        check.adam(MakesNaN)


def test_not_implemented():
    with pytest.raises(CheckFailed, match="not implemented yet"):
        check.adam(Unimplemented)


def test_learner_exception_is_shown():
    with pytest.raises(CheckFailed, match="SGD.step raised KeyError: 'velocity'"):
        check.sgd(Raises)


def test_none_and_instance_and_missing_step():
    with pytest.raises(CheckFailed, match="is None"):
        check.adam(None)
    with pytest.raises(CheckFailed, match="pass the class itself"):
        check.adam(Adam(0.1))

    class NoStep:
        def __init__(self, lr, **kw):
            pass
    with pytest.raises(CheckFailed, match="has no step method"):
        check.rmsprop(NoStep)


def test_wrong_constructor_signature():
    class Named(SGD):
        def __init__(self, lr, mom=0.0):  # `momentum` misnamed
            super().__init__(lr, mom)
    with pytest.raises(CheckFailed, match="SGD raised TypeError: .*unexpected keyword argument 'momentum'"):
        check.sgd(Named)


def test_shared_state_across_shapes_gets_a_hint():
    # Shared state crashes once two shapes meet; the message points at per-key state.
    class SharedRMS(RMSProp):
        def step(self, params, grads):
            for k, p in params.items():
                self.vv = self.alpha * getattr(self, "vv", 0.0) + (1 - self.alpha) * grads[k] ** 2
                p -= self.lr * grads[k] / (np.sqrt(self.vv) + self.eps)
    with pytest.raises(CheckFailed, match="state is shared between parameters|state shared"):
        check.rmsprop(SharedRMS)


def test_cuda_without_gpu_is_a_check_error(monkeypatch):
    monkeypatch.setattr(devices, "cuda_available", lambda: False)
    with pytest.raises(CheckError, match="no CUDA GPU"):
        check.adam(Adam, device="cuda")


def test_cuda_path_runs_reference_on_the_injected_device(fake_gpu):
    result = check.adamw(AdamW, device="cuda")
    assert "device cuda" in str(result) and "cuda" in fake_gpu


def test_checks_are_deterministic_and_quiet(capsys):
    msgs = []
    for _ in range(2):
        with pytest.raises(CheckFailed) as info:
            check.adam(adam_mutant("eps_inside"), seed=5)
        msgs.append(str(info.value))
    assert msgs[0] == msgs[1] and "seed=5" in msgs[0]
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------------------
# The learning-rate schedule
# ------------------------------------------------------------------------------------------


def schedule_mutant(bug):
    def lr(step, total_steps, warmup_steps, base_lr, min_lr=0.0):
        if step < warmup_steps:
            return base_lr * (step if bug == "from0" else step + 1) / warmup_steps
        if step >= total_steps and bug != "no_clamp":
            return min_lr
        p = (step - warmup_steps) / (total_steps - warmup_steps)
        if bug == "unshifted":
            p = step / total_steps
        if bug == "linear":
            return min_lr + (base_lr - min_lr) * (1 - p)
        if bug == "no_min":
            return base_lr * 0.5 * (1 + math.cos(math.pi * p))
        return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * p))
    return lr


@pytest.mark.parametrize("bug, diagnosis", [
    ("from0", "warm-up starts at 0"), ("unshifted", "not shifted by the warm-up"),
    ("linear", "linear decay"), ("no_min", "min_lr is ignored"), ("no_clamp", "rises again")])
def test_schedule_mutants(bug, diagnosis):
    with pytest.raises(CheckFailed, match=f"Likely bug: .*{diagnosis}"):
        check.warmup_cosine(schedule_mutant(bug))


def test_schedule_bad_returns():
    with pytest.raises(CheckFailed, match="is None"):
        check.warmup_cosine(lambda step, total_steps, warmup_steps, base_lr, min_lr=0.0: None)
    with pytest.raises(CheckFailed, match="NaN"):
        check.warmup_cosine(lambda step, total_steps, warmup_steps, base_lr, min_lr=0.0: math.nan)
    with pytest.raises(CheckFailed, match="torch.Tensor"):
        check.warmup_cosine(lambda step, total_steps, warmup_steps, base_lr, min_lr=0.0:
                            torch.tensor(base_lr))


def test_schedule_matches_torch_lambdalr():
    """The closed form equals torch's LambdaLR driven by the same formula as a factor."""
    total, warmup, base = 40, 6, 0.2
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, total, warmup, 1.0))
    for s in range(total + 3):
        assert opt.param_groups[0]["lr"] == pytest.approx(warmup_cosine(s, total, warmup, base),
                                                          rel=1e-12, abs=1e-15)
        opt.step()
        sched.step()


# ------------------------------------------------------------------------------------------
# Property tests: for random hyper-parameters, the reference rules and the correct classes
# follow torch.optim to float64 precision.
# ------------------------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

HP = {
    "SGD": st.fixed_dictionaries({
        "lr": st.floats(1e-3, 0.2), "momentum": st.sampled_from([0.0, 0.5, 0.9, 0.99]),
        "nesterov": st.booleans(), "weight_decay": st.sampled_from([0.0, 1e-4, 0.1])}),
    "RMSProp": st.fixed_dictionaries({"lr": st.floats(1e-4, 0.05), "alpha": st.floats(0.5, 0.999),
                                      "eps": st.sampled_from([1e-8, 1e-6, 1e-3])}),
    "AdaGrad": st.fixed_dictionaries({"lr": st.floats(1e-3, 0.5), "eps": st.sampled_from([1e-10, 1e-6])}),
    "Adam": st.fixed_dictionaries({
        "lr": st.floats(1e-4, 0.1), "betas": st.tuples(st.floats(0.0, 0.99), st.floats(0.9, 0.9999)),
        "eps": st.sampled_from([1e-8, 1e-5]), "weight_decay": st.sampled_from([0.0, 0.01, 0.3])}),
    "AdamW": st.fixed_dictionaries({
        "lr": st.floats(1e-4, 0.1), "betas": st.tuples(st.floats(0.0, 0.99), st.floats(0.9, 0.9999)),
        "eps": st.sampled_from([1e-8, 1e-5]), "weight_decay": st.sampled_from([0.0, 0.01, 0.3])}),
}
CLASSES = {"SGD": SGD, "RMSProp": RMSProp, "AdaGrad": AdaGrad, "Adam": Adam, "AdamW": AdamW}


@pytest.mark.parametrize("name", list(HP))
def test_random_hyperparameters_match_torch(name):
    spec = _SPECS[name]

    @settings(max_examples=8, deadline=None, derandomize=True)
    @given(hp=HP[name], seed=st.integers(0, 2**16))
    def prop(hp, seed):
        if name == "SGD" and hp["nesterov"] and hp["momentum"] == 0:
            hp = {**hp, "nesterov": False}  # torch forbids Nesterov without momentum
        params, grads, _ = _problem(np.random.default_rng(seed), False)
        theirs = _torch_trajectory(spec, hp, params, grads, "cpu")
        assert distance(simulate(spec.rule, hp, params, grads), theirs) < 1e-9
        opt = CLASSES[name](hp["lr"], **{k: v for k, v in hp.items() if k != "lr"})
        mine = {k: v.copy() for k, v in params.items()}
        history = []
        for g in grads:
            opt.step(mine, {k: v.copy() for k, v in g.items()})
            history.append({k: v.copy() for k, v in mine.items()})
        assert distance(history, theirs) < 1e-9

    prop()
