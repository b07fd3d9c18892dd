"""The two ways a check can end badly."""

from __future__ import annotations


class CheckFailed(AssertionError):
    """The learner's code gave a wrong answer, bad output, or could not be run.

    The message is the whole report: headline, likely bug and hint, per-tensor table, worst
    entries and the seed. nbgrader sees an AssertionError and gives the cell no points.
    """


class CheckError(RuntimeError):
    """The check itself could not run properly: not the learner's fault.

    Raised when the two references (autograd and finite differences) disagree, or when a
    check is called with options it cannot honour (e.g. device="cuda" without a GPU).
    """
