"""Run every benchmark under bench/ and write a Markdown report (`make bench`).

Each ``bench/bench_*.py`` defines ``benchmarks() -> list[Case]``: our implementation and the
reference library's, on the same input. The machine is shared and noisy, so we never report an
absolute time alone: the two functions are timed *interleaved* (ours, reference, ours, ...) in the
same run, and the report gives the ratio of their medians. The notebooks' FAST run times from the
last `make test` are appended.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Case:
    name: str  # what is measured, with the input size
    ours: Callable[[], object]
    reference: Callable[[], object]
    reference_name: str  # e.g. "torchvision.ops.nms"
    repeats: int = 15  # interleaved pairs timed; fewer for cases that take seconds per call


def time_pair(case: Case, min_time: float = 0.05) -> tuple[float, float]:
    """Median seconds per call of (ours, reference), measured interleaved."""
    case.ours(), case.reference()  # warm-up: caches, lazy imports, allocator
    calls = 1
    while True:  # enough calls per sample that one sample lasts >= min_time
        start = time.perf_counter()
        for _ in range(calls):
            case.reference()
        if time.perf_counter() - start >= min_time or calls >= 1 << 16:
            break
        calls *= 2
    ours, ref = [], []
    for _ in range(case.repeats):
        for fn, out in ((case.ours, ours), (case.reference, ref)):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            out.append((time.perf_counter() - start) / calls)
    return statistics.median(ours), statistics.median(ref)


def load_cases(path: Path) -> list[Case]:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.benchmarks()


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench.md")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    import torch

    lines = [
        "# Benchmarks",
        "",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads. Ratio = ours / reference "
        "(median of interleaved runs in this process; < 1 means ours is faster).",
        "",
        "| benchmark | ours | reference | reference time | ratio |",
        "|---|---|---|---|---|",
    ]
    for path in sorted((ROOT / "bench").glob("bench_*.py")):
        for case in load_cases(path):
            ours, ref = time_pair(case)
            row = f"| {case.name} | {fmt(ours)} | {case.reference_name} | {fmt(ref)} | {ours / ref:.2f}x |"
            print(row, flush=True)
            lines.append(row)
    times = ROOT / "build" / "notebook_times.json"
    if times.exists():
        lines += [
            "",
            "## Notebooks (FAST mode, last `make test`)",
            "",
            "| notebook | seconds |",
            "|---|---|",
        ]
        lines += [
            f"| {p} | {t['seconds']:.0f} |"
            for p, t in sorted(json.loads(times.read_text()).items())
        ]
    book = ROOT / "build" / "book_times.json"
    if book.exists():
        lines += ["", "## Notebooks executed by `make book`", "", "| notebook | FAST s | full s |"]
        lines += ["|---|---|---|"]
        for name, t in sorted(json.loads(book.read_text()).items()):
            lines.append(f"| {name} | {t.get('fast', '–')} | {t.get('full', '–')} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
