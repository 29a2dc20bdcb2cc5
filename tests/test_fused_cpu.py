"""The fused CPU kernel of the scheme losses (``dm_core/fused_cpu.cpp``) against the tensor-op
implementation it stands in for, and the fallback when it cannot be built.

Every other loss test runs on the CPU, so on a machine with the kernel they test it too
(float64 references, mpmath at extreme margins, Eq. 7); here the two implementations are
compared directly, on every scheme loss and on the inputs where they could part ways."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from dm_core import fused_cpu
from dm_core.losses import LOSSES, _scheme_loss, list_losses, make_loss
from dm_core.schemes import make_scheme

CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
SCHEME_LOSSES = [n for n in list_losses() if LOSSES.get(n).extra["family"] == "scheme"]


@pytest.fixture
def kernel():
    reason = fused_cpu.unavailable_reason()
    if reason is not None:
        if CI:
            pytest.fail(f"under CI=true the fused CPU kernel must be built: {reason}")
        pytest.skip(f"the fused CPU kernel cannot be built here: {reason}")
    module = fused_cpu.kernel()
    assert module is not None, "buildable, yet kernel() gave None (see the warning)"
    return module


@pytest.fixture
def fresh_kernel_cache():
    """kernel() is cached per process: clear it around a test that changes how it loads."""
    fused_cpu.kernel.cache_clear()
    yield
    fused_cpu.kernel.cache_clear()


def _problem(name: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    if name == "random":
        z, t = 3 * torch.randn(64, 10, generator=g), torch.randint(0, 10, (64,), generator=g)
    elif name == "odd sizes":  # C not a multiple of any vector width: tails and the label's lane
        z, t = 4 * torch.randn(33, 257, generator=g), torch.randint(0, 257, (33,), generator=g)
    elif name == "two classes":
        z, t = 5 * torch.randn(9, 2, generator=g), torch.tensor([0, 1] * 4 + [1])
    elif name == "labels at both ends":
        z, t = torch.randn(16, 19, generator=g), torch.tensor([0, 18] * 8)
    elif name == "huge margins":  # confident right (1 - p underflows) and confidently wrong
        z = torch.randn(8, 12, generator=g)
        t = torch.arange(8) % 12
        z[torch.arange(4), t[:4]] += 1e4
        z[torch.arange(4, 8), (t[4:] + 1) % 12] += 1e4
    elif name == "ties":
        z, t = torch.zeros(10, 5), torch.arange(10) % 5
    elif name == "transposed":  # not contiguous
        z, t = (2 * torch.randn(13, 40, generator=g)).t(), torch.randint(0, 13, (40,), generator=g)
    else:
        raise KeyError(name)
    return z.to(dtype), t


PROBLEMS = ["random", "odd sizes", "two classes", "labels at both ends", "huge margins", "ties",
            "transposed"]


def _run(z, t, scheme, normalise, eps, fused, scale=1.0):
    x = z.clone().requires_grad_(True) if z.is_contiguous() else z.detach().requires_grad_(True)
    loss, stats = _scheme_loss(x, t, scheme, normalise, eps, fused=fused)
    (loss * scale).backward()
    return loss.detach(), x.grad, stats.p, stats.weight


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("name", SCHEME_LOSSES)
def test_kernel_matches_the_tensor_ops(kernel, name, problem, dtype):
    module = make_loss(name)
    z, t = _problem(problem, dtype)
    tol = {"rtol": 1e-5, "atol": 1e-7} if dtype == torch.float32 else {"rtol": 1e-11, "atol": 1e-14}
    for eps in sorted({module.eps, 0.0, 1e-3}):
        fused = _run(z, t, module.scheme, module.normalise, eps, fused=True)
        eager = _run(z, t, module.scheme, module.normalise, eps, fused=False)
        for what, a, b in zip(("loss", "grad", "p", "weight"), fused, eager, strict=True):
            assert a.dtype == b.dtype == dtype and a.shape == b.shape, what
            torch.testing.assert_close(a, b, **tol, msg=lambda m, w=what, e=eps: f"{w} (eps={e}): {m}")


@pytest.mark.parametrize("scheme", [make_scheme("dm", lam=0.0, beta=-30.0),
                                    make_scheme("dm", lam=2.0, beta=80.0),
                                    make_scheme("beta", alpha=0.5, eta=2.0)])  # a pole at p = 0
def test_kernel_matches_at_extreme_emphasis(kernel, scheme):
    z, t = _problem("huge margins", torch.float32)
    for normalise in (True, False):
        for a, b in zip(_run(z, t, scheme, normalise, 1e-6, True),
                        _run(z, t, scheme, normalise, 1e-6, False), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, equal_nan=True)


def test_kernel_scales_by_the_upstream_gradient(kernel):
    z, t = _problem("random", torch.float64)
    scheme = make_scheme("dm", lam=1.0, beta=12.0)
    once = _run(z, t, scheme, True, 1e-6, True)[1]
    thrice = _run(z, t, scheme, True, 1e-6, True, scale=3.0)[1]
    torch.testing.assert_close(thrice, 3 * once)


def test_non_finite_logits_stay_non_finite_the_same_way(kernel):
    z = torch.tensor([[0.0, float("nan"), 1.0], [0.0, float("inf"), 1.0], [1.0, 2.0, 3.0]])
    t = torch.tensor([0, 0, 2])
    scheme = make_scheme("dm", lam=0.5, beta=8.0)
    for a, b in zip(_run(z, t, scheme, True, 1e-6, True), _run(z, t, scheme, True, 1e-6, False), strict=True):
        torch.testing.assert_close(a, b, equal_nan=True)


def test_kernel_names_a_bad_class_index(kernel):
    with pytest.raises(ValueError, match=r"class index 5 is out of range; must be in \[0, 4\]"):
        make_loss("dm")(torch.zeros(3, 5), torch.tensor([0, 5, 1]))
    with pytest.raises(RuntimeError, match="out of bounds"):  # the kernel's own guard
        kernel.row_parts(torch.zeros(2, 3), torch.tensor([0, -1]))


def test_a_failed_build_falls_back_with_one_warning(monkeypatch, fresh_kernel_cache):
    import torch.utils.cpp_extension as cpp_extension

    def failing_load(**_kwargs):
        raise RuntimeError("Error building extension 'dm_fused_cpu':\nc++: fatal error: no space left")

    monkeypatch.setattr(fused_cpu, "unavailable_reason", lambda: None)
    monkeypatch.setattr(cpp_extension, "load", failing_load)
    with pytest.warns(RuntimeWarning, match="the build failed: c\\+\\+: fatal error: no space left"):
        assert fused_cpu.kernel() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process, not per call
        z, t = _problem("random", torch.float32)
        loss = make_loss("dm", lam=1.0, beta=12.0)(z, t)
    expected = _scheme_loss(z, t, make_scheme("dm", lam=1.0, beta=12.0), True, 1e-6, fused=False)[0]
    assert torch.equal(loss, expected)


def test_no_compiler_is_named_and_switching_off_is_quiet(monkeypatch, fresh_kernel_cache):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    assert "no C++ compiler" in fused_cpu.unavailable_reason()
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        assert fused_cpu.kernel() is None
    fused_cpu.kernel.cache_clear()
    monkeypatch.setenv("DM_FUSED_CPU", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fused_cpu.kernel() is None


# ---------------------------------------------------------------- where and when it is built

def _checkout(root, source: bytes):
    """A copy of the project's kernel source as another checkout would hold it."""
    path = root / "dm_core" / "fused_cpu.cpp"
    path.parent.mkdir(parents=True)
    path.write_bytes(source)
    return path


def test_checkouts_of_one_source_share_one_build_and_a_changed_source_gets_its_own(
        tmp_path, monkeypatch, fresh_kernel_cache):
    """Issue 25 (8): the build was named by the environment and compiled from the checkout's
    own file, so two checkouts with one venv rebuilt each other's kernel in turn."""
    import torch.utils.cpp_extension as cpp_extension

    calls = []

    def recording_load(**kwargs):  # stands in for the compiler: records what would be built
        calls.append(kwargs)
        return object()

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "extensions"))
    monkeypatch.setattr(fused_cpu, "unavailable_reason", lambda: None)
    monkeypatch.setattr(cpp_extension, "load", recording_load)
    original = fused_cpu.SOURCE.read_bytes()
    changed = original + b"\n// one more line\n"
    for checkout, source in (("a", original), ("b", original), ("c", changed)):
        monkeypatch.setattr(fused_cpu, "SOURCE", _checkout(tmp_path / checkout, source))
        fused_cpu.kernel.cache_clear()
        assert fused_cpu.kernel() is not None
    a, b, c = calls
    assert fused_cpu.build_key(original) == fused_cpu.build_key(bytes(original))
    assert fused_cpu.build_key(original) != fused_cpu.build_key(changed)
    # One build for a and b: the same name, folder and compiled file (a copy in that folder,
    # not either checkout's), so the second finds the first's build up to date.
    assert (a["name"], a["build_directory"], a["sources"]) == (b["name"], b["build_directory"],
                                                               b["sources"])
    assert a["name"] == f"dm_fused_cpu_{fused_cpu.build_key(original)}"
    [compiled] = a["sources"]
    assert Path(compiled).parent == Path(a["build_directory"])
    assert Path(compiled).read_bytes() == original
    # The changed source is built apart, and leaves the first build as it was.
    assert c["name"] == f"dm_fused_cpu_{fused_cpu.build_key(changed)}" != a["name"]
    assert c["build_directory"] != a["build_directory"]
    assert Path(c["sources"][0]).read_bytes() == changed
    assert Path(compiled).read_bytes() == original


def test_a_process_waiting_for_another_ones_build_says_so(tmp_path, capfd):
    """Issue 25 (8): a process waiting on the build lock was silent for 10 minutes."""
    import threading

    lock = tmp_path / "build" / fused_cpu.BUILD_LOCK_NAME
    lock.parent.mkdir()
    with fused_cpu.build_lock(lock):  # nobody else holds it: no word
        pass
    assert "waiting" not in capfd.readouterr().err

    holder = subprocess.Popen(  # another process, in the middle of its build
        [sys.executable, "-c", "import sys, filelock; lock = filelock.FileLock(sys.argv[1]); "
         "lock.acquire(); print('held', flush=True); sys.stdin.read()", str(lock)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        acquired = threading.Event()

        def wait_for_the_build():
            with fused_cpu.build_lock(lock):
                acquired.set()

        waiter = threading.Thread(target=wait_for_the_build, daemon=True)
        waiter.start()
        said = ""
        deadline = time.monotonic() + 60
        while "waiting for another process" not in said and time.monotonic() < deadline:
            said += capfd.readouterr().err
            time.sleep(0.02)
        assert "waiting for another process building the losses' CPU kernel" in said
        assert str(lock.parent) in said
        assert not acquired.is_set()  # it says so while it waits, not after
    finally:
        holder.stdin.close()  # the other build ends
        holder.wait(timeout=60)
    waiter.join(timeout=60)
    assert acquired.is_set()


def test_training_loads_the_kernel_before_its_clock_starts(monkeypatch):
    """Issue 25 (8): the first run on a machine compiled the kernel inside its timed loop."""
    from types import SimpleNamespace

    import dm_core.train as train_module
    from dm_core.config import parse_config

    order = []
    monkeypatch.setattr(fused_cpu, "kernel", lambda: order.append("kernel"))  # tensor ops
    monkeypatch.setattr(train_module, "time", SimpleNamespace(
        perf_counter=lambda: order.append("clock") or time.perf_counter()))
    config = parse_config({"dataset": {"name": "digits"}, "model": {"name": "mlp", "hidden": [8]},
                           "loss": {"name": "dm"}, "iterations": 2, "eval_every": 2,
                           "batch_size": 16, "device": "cpu"})
    train_module.train(config)
    assert order[0] == "kernel" and "clock" in order
