"""The scheme losses' two passes over the logits as one compiled CPU call each.

``dm_core.losses`` computes the designed gradient in two steps (``_row_parts``: the shifted
exponentials and ``log p``, ``log(1 - p)`` of every row; ``_assemble``: the gradient and the
surrogate loss). As tensor ops each step is about a dozen small ops, whose fixed cost makes
the loss about twice cross-entropy's time on a CIFAR-sized CPU batch; ``fused_cpu.cpp`` does each
step in one loop per row. It is compiled on first use with ``torch.utils.cpp_extension``
(a C++ compiler and ninja; about 30 s once, then cached in ``$TORCH_EXTENSIONS_DIR``,
default ``~/.cache/torch_extensions``); ``make run``, ``make test`` and ``make bench`` build
it before they start, and ``dm_core.train.train`` loads it before its clock starts. Where it
cannot be built the losses use the tensor ops, with one warning saying why.
``DM_FUSED_CPU=0`` turns it off.

One build serves every checkout and process with the same source and toolchain: its folder
is named by ``build_key``, a hash of the source's content, the compiler flags, the compiler
and the torch installation (whose headers it includes), and the source is compiled from a
copy inside that folder. Two checkouts of one commit (or one venv used from two) therefore
share one build instead of rebuilding each other's, and a changed source gets a folder of
its own. A process that finds another one building says so on stderr while it waits.

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
import sysconfig
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import torch

__all__ = ["SOURCE", "build_directory", "build_flags", "build_key", "build_lock", "kernel",
           "unavailable_reason"]

SOURCE = Path(__file__).with_name("fused_cpu.cpp")
BUILD_LOCK_NAME = "dm-build.lock"


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


def build_key(source: bytes) -> str:
    """The name of one build: a hash of the source's content and of everything else the
    compiled module depends on -- the compiler flags, the compiler, and the torch installation
    whose headers and version it is built against (two venvs give two keys).

    Where the source lives is not part of it: two checkouts of one commit share one build.
    """
    compiler = os.environ.get("CXX", "c++")
    digest = hashlib.sha256()
    for part in (source, *build_flags(), shutil.which(compiler) or compiler, torch.__version__,
                 str(Path(torch.__file__).resolve().parent), sysconfig.get_paths()["include"]):
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"\0")  # so that no two different lists of parts run together alike
    return digest.hexdigest()[:16]


def build_directory(name: str) -> Path:
    """The folder of build ``name``: under ``$TORCH_EXTENSIONS_DIR``, else torch's per-user
    default (``~/.cache/torch_extensions``)."""
    from torch.utils.cpp_extension import get_default_build_root

    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()) / name


@contextlib.contextmanager
def build_lock(path: Path) -> Iterator[None]:
    """Hold the build folder's lock for a build or a load. When another process holds it (it
    is compiling, about 30 s), say so on stderr before waiting: a silent wait looks like a
    hang. It is an OS file lock, released when its holder dies, so a killed build never
    leaves the next process waiting for ever."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"dm_core.fused_cpu: waiting for another process building the losses' CPU kernel "
              f"in {path.parent} (a build takes about 30 s; its lock is {path.name})",
              file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _source_copy(directory: Path, source: bytes) -> Path:
    """The copy of the source that is compiled, inside the build folder, so that the build
    commands are the same from every checkout. Written only when missing or different: a
    rewrite would give it a newer time, and ninja would compile it again."""
    copy = directory / SOURCE.name
    if not copy.is_file() or copy.read_bytes() != source:
        partial = copy.with_name(f"{copy.name}.{os.getpid()}.tmp")
        partial.write_bytes(source)
        os.replace(partial, copy)
    return copy


def _load() -> ModuleType:
    """Compile (when no build of this source and toolchain exists yet) and import the kernel."""
    source = SOURCE.read_bytes()
    name = f"dm_fused_cpu_{build_key(source)}"
    with _build_environment():  # before torch.utils.cpp_extension is imported: its note is off
        from torch.utils.cpp_extension import load

        directory = build_directory(name)
        directory.mkdir(parents=True, exist_ok=True)
        logging.getLogger(__name__).info("loading %s from %s (compiled once per source and "
                                         "toolchain, ~30 s)", name, directory)
        with build_lock(directory / BUILD_LOCK_NAME):
            return load(name=name, sources=[str(_source_copy(directory, source))],
                        extra_cflags=build_flags(), build_directory=str(directory), verbose=False)


@functools.cache
def kernel() -> ModuleType | None:
    """The compiled module (``row_parts``, ``assemble``), built on first call; None, with
    one warning naming the reason, where it cannot be built."""
    why = unavailable_reason()
    if why is None:
        try:
            return _load()
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
