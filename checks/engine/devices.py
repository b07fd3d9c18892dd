"""Choosing the torch device the autograd reference runs on."""

from __future__ import annotations

import torch

from .errors import CheckError


def cuda_available() -> bool:
    """Whether a CUDA GPU can be used (tests replace this to cover the CUDA path on CPU)."""
    return torch.cuda.is_available()


def torch_device(name: str) -> torch.device:
    """The torch.device for a resolved device name (tests may replace this too)."""
    return torch.device(name)


def resolve_device(device: str | None) -> str:
    """Turn the `device` option of a check into "cpu" or "cuda".

    None means "cuda when available, otherwise cpu". Asking for "cuda" explicitly on a
    machine without a GPU is an error that says so, never a silent fallback.
    """
    if device is None:
        return "cuda" if cuda_available() else "cpu"
    if not isinstance(device, str):
        raise CheckError(f'device must be "cpu", "cuda" or None, not {device!r}')
    name = device.lower()
    if name.startswith("cuda"):
        if not cuda_available():
            raise CheckError(
                f'device="{device}" was asked for, but no CUDA GPU is available here. '
                'Use device=None to run on the GPU when there is one and on the CPU otherwise.'
            )
        return name
    if name == "cpu":
        return "cpu"
    raise CheckError(f'device must be "cpu", "cuda" or None, not {device!r}')
