"""One ResNet-20 training step on 128 CIFAR-sized images: DM against CCE, side by side.

Target (issue: benchmarks): DM ≤ 1.02× CCE per step -- the loss is a rounding error next
to the network. Prints the medians and the fastest steps with their ratios, and a ``verdict:``
line: met when both ratios are within the target, inconclusive when they disagree.

    python benchmarks/bench_train_step.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dm_core.losses import make_loss
from dm_core.models import create_model

TARGET = 1.02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = create_model("resnet20", 10, (3, 32, 32)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    losses = {"cce": make_loss("cce"), "dm": make_loss("dm", lam=1.0, beta=12.0)}

    def step(loss_fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for fn in losses.values():  # warm-up
        for _ in range(3):
            step(fn)
    times: dict[str, list[float]] = {k: [] for k in losses}
    for _ in range(args.repeats):  # interleaved, so load drift hits both alike
        for name, fn in losses.items():
            times[name].append(step(fn))
    print(f"device {device}, batch {args.batch}, torch {torch.__version__}, {args.repeats} "
          f"interleaved steps each")
    for label, stat in (("median", statistics.median), ("fastest", min)):
        cce, dm = stat(times["cce"]), stat(times["dm"])
        print(f"ResNet-20 step, {label:7}  CCE {cce * 1e3:8.1f} ms   DM {dm * 1e3:8.1f} ms   "
              f"DM/CCE {dm / cce:5.3f}  (target ≤ {TARGET})")
    # Two estimates of one ratio: other work on the machine adds time to either side at random,
    # so the median and the fastest steps can fall on different sides of a 2% target.
    median = statistics.median(times["dm"]) / statistics.median(times["cce"])
    fastest = min(times["dm"]) / min(times["cce"])
    both = f"DM/CCE per ResNet-20 step {median:.3f} (median), {fastest:.3f} (fastest of {args.repeats})"
    if max(median, fastest) <= TARGET:
        print(f"verdict: {both} ≤ {TARGET}: met")
    elif min(median, fastest) > TARGET:
        print(f"verdict: {both} > {TARGET}: MISSED")
    else:
        print(f"verdict: {both}: inconclusive -- one estimate is within {TARGET} and one is not, "
              "so the machine's noise exceeds the target's margin; rerun on an idle machine")

if __name__ == "__main__":
    main()
