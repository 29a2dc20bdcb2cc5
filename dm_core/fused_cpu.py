"""The scheme losses' two passes over the logits as one compiled CPU call each.

``dm_core.losses`` computes the designed gradient in two steps (``_row_parts``: the shifted
exponentials and ``log p``, ``log(1 - p)`` of every row; ``_assemble``: the gradient and the
surrogate loss). As tensor ops each step is about a dozen small ops, whose fixed cost makes
the loss about twice cross-entropy's time on a CIFAR-sized CPU batch; ``fused_cpu.cpp`` does each
step in one loop per row. It is compiled on first use with ``torch.utils.cpp_extension``
(a C++ compiler and ninja; about 30 s once, then cached in ``$TORCH_EXTENSIONS_DIR``,
default ``~/.cache/torch_extensions``); ``make run``, ``make test`` and ``make bench`` build
it before they start. Where it cannot be built the losses use the tensor ops, with one
warning saying why. ``DM_FUSED_CPU=0`` turns it off.

>>> import torch
>>> from dm_core.losses import make_loss
>>> logits = torch.tensor([[2.0, 0.0, 0.0]], requires_grad=True)
>>> make_loss("cce-dn")(logits, torch.tensor([0])).backward()  # fused when available
>>> logits.grad
tensor([[-0.5000,  0.2500,  0.2500]])
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import torch

__all__ = ["SOURCE", "build_flags", "kernel", "unavailable_reason"]

SOURCE = Path(__file__).with_name("fused_cpu.cpp")


def build_flags() -> list[str]:
    """Compiler flags: ATen's AVX2 vector kernels where the CPU has them (every x86-64 CPU
    since 2013 and all AVX-512 ones), its portable ones elsewhere (slower, still correct)."""
    flags = ["-O3"]
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
    return flags


def unavailable_reason() -> str | None:
    """Why the kernel cannot be built here, or None if it can be tried."""
    if os.environ.get("DM_FUSED_CPU", "1").strip() == "0":
        return "DM_FUSED_CPU=0"
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler ({compiler!r} is not on PATH; set CXX)"
    if shutil.which("ninja") is None and _ninja_dir() is None:
        return "ninja is not installed (pip install ninja)"
    return None


def _ninja_dir() -> str | None:
    """The ``ninja`` wheel's binary directory (a venv's bin is not always on PATH)."""
    try:
        import ninja
    except ImportError:
        return None
    return getattr(ninja, "BIN_DIR", None)


@contextlib.contextmanager
def _build_environment() -> Iterator[None]:
    """ninja on PATH for the build, and torch's import-time note about a missing CUDA
    toolkit silenced (a CPU kernel needs none)."""
    path = os.environ.get("PATH", "")
    ninja_dir = _ninja_dir() if shutil.which("ninja") is None else None
    ext_log = logging.getLogger("torch.utils.cpp_extension")
    level = ext_log.level
    ext_log.setLevel(logging.ERROR)
    if ninja_dir:
        os.environ["PATH"] = ninja_dir + os.pathsep + path
    try:
        yield
    finally:
        ext_log.setLevel(level)
        os.environ["PATH"] = path


def _extension_name() -> str:
    """One build per CPU flavour and Python environment: torch rebuilds an extension whenever
    its include paths change, so two venvs sharing one name would rebuild it in turn."""
    flavour = "avx2" if "-mavx2" in build_flags() else "default"
    env = hashlib.sha1(f"{sys.prefix}|{torch.__version__}".encode()).hexdigest()[:8]
    return f"dm_fused_cpu_{flavour}_{env}"


@functools.cache
def kernel() -> ModuleType | None:
    """The compiled module (``row_parts``, ``assemble``), built on first call; None, with
    one warning naming the reason, where it cannot be built."""
    why = unavailable_reason()
    if why is None:
        name = _extension_name()
        logging.getLogger(__name__).info("loading %s (compiled once per machine, ~30 s)", name)
        try:
            with _build_environment():
                from torch.utils.cpp_extension import load

                return load(name=name, sources=[str(SOURCE)], extra_cflags=build_flags(),
                            verbose=False)
        except Exception as err:  # a failed compile must not stop training: fall back
            lines = str(err).strip().splitlines()
            why = f"the build failed: {lines[-1] if lines else repr(err)}"
    if why != "DM_FUSED_CPU=0":
        warnings.warn(f"dm_core: the fused CPU kernel of the scheme losses is not available "
                      f"({why}); using tensor ops, which take about twice as long on small batches",
                      RuntimeWarning, stacklevel=2)
    return None


if __name__ == "__main__":  # `python -m dm_core.fused_cpu`: build now (make run/test/bench do)
    print("dm_core.fused_cpu: loading the losses' CPU kernel (a first build takes about 30 s) ...",
          flush=True)
    try:
        module = kernel()
    except KeyboardInterrupt:
        print("dm_core.fused_cpu: interrupted; the next run builds it", file=sys.stderr)
        sys.exit(130)
    print("dm_core.fused_cpu: " + (f"ready ({module.__file__})" if module else "not available"))
