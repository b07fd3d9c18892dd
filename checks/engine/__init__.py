"""The gradient-check engine shared by every topic module.

Topic modules describe *what* to check (cases, an adapter around the learner's functions, a
torch reference, known bugs as hypotheses); `check_gradients` / `check_outputs` do the rest.
"""

from .arrays import as_float, as_float_array
from .compare import ATOL, RTOL, Comparison, allclose, compare
from .core import Case, Hypothesis, check_gradients, check_outputs, public_check, surrogate
from .devices import resolve_device
from .diagnose import Diagnosis, diagnose
from .errors import CheckError, CheckFailed
from .learner import call, require_callable, unpack
from .report import CheckPassed

__all__ = [
    "ATOL", "RTOL", "Case", "CheckError", "CheckFailed", "CheckPassed", "Comparison", "Diagnosis",
    "Hypothesis", "allclose", "as_float", "as_float_array", "call", "check_gradients",
    "check_outputs", "compare", "diagnose", "public_check", "require_callable", "resolve_device",
    "surrogate", "unpack",
]
