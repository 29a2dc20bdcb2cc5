"""Which device a run trains on. Code is device-agnostic: CUDA whenever present, never assumed."""

from __future__ import annotations

import torch

from dm_core.registry import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → the first CUDA device if there is one, else the CPU; ``cuda:N`` is checked.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} was asked for but no CUDA device is visible; use auto or cpu")
        index = int(name.split(":", 1)[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device: {name!r} does not exist; visible CUDA devices: 0..{torch.cuda.device_count() - 1}")
        return torch.device("cuda", index)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError("device: 'mps' is not available on this machine; use auto or cpu")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"device: unknown device {name!r}; allowed: auto, cpu, cuda, cuda:N, mps")


def visible_gpus() -> list[str]:
    """Device names of every visible CUDA GPU (``[]`` on a CPU-only machine)."""
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
