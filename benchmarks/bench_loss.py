"""Forward + backward of DMLoss against F.cross_entropy, side by side in one run.

Target (issue: benchmarks): DM ≤ 1.5× cross-entropy on the CPU. Prints one row per
shape and device with both medians and their ratio, and a ``verdict:`` line per CPU shape.
On the CPU DMLoss runs the fused kernel (``dm_core.fused_cpu``) where it can be built; the
``ops`` column is the same loss as plain tensor ops (its fallback, and the GPU path).

    python benchmarks/bench_loss.py [--repeats 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from dm_core import fused_cpu
from dm_core.losses import DMLoss, _scheme_loss

TARGET = 1.5


def _time(fn, repeats: int, device: torch.device) -> float:
    for _ in range(10):  # warm-up: allocator, kernels, autograd graph caches
        fn()
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def bench(n: int, c: int, device: torch.device, repeats: int) -> tuple[float, float, float]:
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(n, c, generator=gen) * 3).to(device).requires_grad_(True)
    targets = torch.randint(0, c, (n,), generator=gen).to(device)
    dm = DMLoss(lam=1.0, beta=12.0)

    def step_ce():
        logits.grad = None
        F.cross_entropy(logits, targets).backward()

    def step_dm():
        logits.grad = None
        dm(logits, targets).backward()

    def step_dm_ops():
        logits.grad = None
        _scheme_loss(logits, targets, dm.scheme, True, dm.eps, fused=False)[0].backward()

    # Interleave the three so drift in machine load hits all alike.
    ce_t, dm_t, ops_t = [], [], []
    for _ in range(3):
        ce_t.append(_time(step_ce, repeats // 3, device))
        dm_t.append(_time(step_dm, repeats // 3, device))
        ops_t.append(_time(step_dm_ops, repeats // 3, device))
    return statistics.median(ce_t), statistics.median(dm_t), statistics.median(ops_t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    kernel = fused_cpu.kernel()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; DMLoss on the CPU: "
          + ("fused kernel" if kernel else f"tensor ops ({fused_cpu.unavailable_reason() or 'build failed'})"))
    print(f"{'device':6} {'shape':>11} {'CE (ms)':>9} {'DM (ms)':>9} {'DM/CE':>7} {'ops (ms)':>9} "
          f"{'ops/CE':>7}  target ≤ {TARGET} on CPU")
    cpu_rows = []
    for device in devices:
        for n, c in SHAPES:
            ce, dm, ops = bench(n, c, device, args.repeats)
            print(f"{device.type:6} {f'{n}x{c}':>11} {ce * 1e3:9.3f} {dm * 1e3:9.3f} {dm / ce:7.2f} "
                  f"{ops * 1e3:9.3f} {ops / ce:7.2f}")
            if device.type == "cpu":
                cpu_rows.append((n, c, ce, dm))
    for n, c, ce, dm in cpu_rows:
        if (n, c) in TARGET_SHAPES:
            print(verdict(n, c, ce, dm, cpu_rows))


# The two shapes carry the target; the others show how the ratio moves with size.
TARGET_SHAPES = ((256, 100), (1024, 1000))
SHAPES = ((256, 10), (256, 100), (1024, 100), (256, 1000), (1024, 1000))


def verdict(n: int, c: int, ce: float, dm: float, rows: list[tuple[int, int, float, float]]) -> str:
    """``met`` or ``MISSED`` for one shape; a miss says, from the measured rows, how DM's
    extra time per call compares across sizes (a fixed cost stays put while CE's grows)."""
    ratio = dm / ce
    if ratio <= TARGET:
        return f"verdict: CPU {n}x{c}: DM/CE {ratio:.2f} ≤ {TARGET}: met"
    extra = ", ".join(f"{rn}x{rc} {(rd - rc_) * 1e3:+.3f} ms ({rd / rc_:.2f}x)"
                      for rn, rc, rc_, rd in rows)
    return (f"verdict: CPU {n}x{c}: DM/CE {ratio:.2f} > {TARGET}: MISSED -- DM takes "
            f"{(dm - ce) * 1e3:.3f} ms more than CE's {ce * 1e3:.3f} ms here; DM's extra time "
            f"per call by size: {extra}")


if __name__ == "__main__":
    main()
