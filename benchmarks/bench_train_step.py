"""One ResNet-20 training step on 128 CIFAR-sized images: DM against CCE, side by side.

Target (issue: benchmarks): DM ≤ 1.02× CCE per step -- the loss is a rounding error next
to the network. Prints both medians and their ratio.

    python benchmarks/bench_train_step.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dm_core.losses import make_loss
from dm_core.models import create_model


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
    cce, dm = statistics.median(times["cce"]), statistics.median(times["dm"])
    print(f"device {device}, batch {args.batch}, torch {torch.__version__}")
    print(f"ResNet-20 step  CCE {cce * 1e3:8.1f} ms   DM {dm * 1e3:8.1f} ms   DM/CCE {dm / cce:5.3f}  (target ≤ 1.02)")


if __name__ == "__main__":
    main()
