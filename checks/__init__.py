"""Gradient checks for the Backprop from scratch course.

    from checks import manual_backprop as check
    check.linear_backward(linear_forward, linear_backward)

One module per notebook (chain_rule, forward_pass, loss, manual_backprop, autodiff,
vanishing_gradients, optimizers, lora), all built on `checks.engine`. `gradcheck` checks any
hand-written gradient function against a torch function, with no new code.
"""

from .engine import CheckError, CheckFailed, CheckPassed
from .engine.api import assert_close, gradcheck

__all__ = ["CheckError", "CheckFailed", "CheckPassed", "assert_close", "gradcheck"]
__version__ = "0.1.0"
