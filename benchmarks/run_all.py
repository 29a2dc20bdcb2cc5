"""Run every ``benchmarks/bench_*.py`` and write their output to ``docs/benchmarks.md``.

    python benchmarks/run_all.py            # what ``make bench`` runs
    python benchmarks/run_all.py --only loss,queries

Each benchmark prints ratios measured side by side in one run; this file only collects them
with the machine they came from and the command that regenerates them. A benchmark with a
target prints one ``verdict: ...`` line per target, ending in ``met``, ``MISSED`` or
``inconclusive`` (two estimates disagree: the machine's noise is larger than the target's
margin); those lines are gathered into the table of targets at the top of the page.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, {platform.system()} {platform.release()}")


def verdicts(stem: str, output: str, returncode: int) -> list[tuple[str, str]]:
    """The benchmark's ``verdict:`` lines, or what stands in for them."""
    if returncode:
        return [(stem, f"**did not finish** (exit code {returncode}; see below)")]
    found = [line.split(":", 1)[1].strip() for line in output.splitlines()
             if line.startswith("verdict:")]
    found = [v.replace("MISSED", "**MISSED**").replace("inconclusive", "**inconclusive**")
             for v in found]
    return [(stem, v) for v in found] or [(stem, "no target set (figures only)")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated benchmark names (bench_<name>.py)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    files = sorted((ROOT / "benchmarks").glob("bench_*.py"))
    if wanted:
        files = [f for f in files if f.stem[len("bench_"):] in wanted]
    load_before = os.getloadavg()[0]
    sections, targets = [], []
    for f in files:
        print(f"== {f.name}", flush=True)
        proc = subprocess.run([sys.executable, str(f)], capture_output=True, text=True, cwd=ROOT)
        output = (proc.stdout + (f"\n(exit code {proc.returncode})\n{proc.stderr[-2000:]}" if proc.returncode else "")).strip()
        print(output, flush=True)
        doc = " ".join(f.read_text().split('"""')[1].strip().split("\n\n")[0].split()) or f.stem
        sections.append(f"## {f.stem}\n\n{doc}\n\n```\n$ python benchmarks/{f.name}\n{output}\n```\n")
        targets += verdicts(f.stem, output, proc.returncode)
    text = ("# Benchmarks\n\n"
            f"Generated {dt.date.today().isoformat()} by `python benchmarks/run_all.py` (`make bench`) on: "
            f"{machine()}.\n\nEvery figure is a ratio or latency measured side by side in one run, "
            "so machine load affects both sides alike; absolute times vary between machines. "
            f"Load average (1 min) when the run started: {load_before:.1f}, when it ended: "
            f"{os.getloadavg()[0]:.1f} (above 0 before it started: other work shared the machine, "
            "which shows as noise in the ratios).\n\n"
            "## Targets\n\n| benchmark | verdict |\n|---|---|\n"
            + "".join(f"| [{stem}](#{stem}) | {v} |\n" for stem, v in targets)
            + "\n" + "\n".join(sections))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
