"""Run the benchmarks under bench/ and write a Markdown report (`make bench`).

    python bench/run.py [--out build/bench.md] [--threads 1] [bench/bench_train.py ...]

Without file names it runs every ``bench/bench_*.py``.

Each ``bench/bench_*.py`` defines ``benchmarks() -> list[Case]``: our implementation and a
reference (a library's, or the bare PyTorch loop) on the same input. The machine is shared and
noisy, so no absolute time is reported alone. ``torch.utils.benchmark`` times the two in
alternating rounds of the same process (ours then reference, reference then ours, ...); the report
gives each one's median and interquartile range (IQR, the spread of the middle half), and the
median of the per-round ratios ours / reference: a load that slows the machine for a few seconds
slows both sides of a round and cancels out of its ratio. Two more choices keep the numbers steady:

- one thread unless told otherwise, like ``torch.utils.benchmark`` itself: on a busy machine, two
  threads that wait for each other turn a 0.3 s training epoch into anything from 2 to 17 s;
- without an accelerator, the CPU time of the process: it stops while other programs have the
  core, where the wall clock goes on.

A case can set a target, the largest ratio it may reach; the run exits 1 when one is missed. On
this machine two back-to-back runs of the *same* training epoch differ by about 9 % (the IQR of
their ratio), so a median of 20 rounds is still about +-2 % uncertain, too much to judge a 5 %
target from a fixed number of rounds. A case with a target therefore keeps measuring, up to
``max_rounds``, until the 95 % confidence interval of the median ratio lies on one side of the
target: a clear result stops early, and only a close one costs more rounds. The lesson run times
recorded by the last `make test` and `make book` are appended.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils import benchmark

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import lesson_times  # noqa: E402  (tools/ is a folder of scripts, not a package)

# With an accelerator, torch's own clock: it synchronises first, so the kernels still queued count.
# Without one, the CPU time of this process: other programs' turns on the core are not counted.
ON_ACCELERATOR = torch.accelerator.is_available()
CLOCK = benchmark.timer if ON_ACCELERATOR else time.process_time


@dataclass
class Case:
    name: str  # what is measured, with the input size
    ours: Callable[[], object]
    reference: Callable[[], object]
    reference_name: str  # e.g. "torchvision.ops.nms"
    rounds: int = 10  # alternating rounds; fewer for cases that take seconds per call
    target: float | None = None  # the largest ours / reference allowed, e.g. 1.05: <= 5 % slower
    max_rounds: int | None = None  # with a target: go on until decided (see decided()), up to this


@dataclass
class Result:
    ours: benchmark.Measurement  # every timed block of every round, merged
    reference: benchmark.Measurement
    ratios: list[float]  # one per round: ours' median / the reference's median in that round

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def ratio_iqr(self) -> float:
        q1, _, q3 = statistics.quantiles(self.ratios, n=4, method="inclusive")
        return q3 - q1

    @property
    def interval(self) -> tuple[float, float]:
        return median_interval(self.ratios)


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """A confidence interval of the median of ``values`` that assumes no distribution.

    Of ``n`` independent rounds, how many fall below the true median is Binomial(n, 1/2), so the
    k-th smallest and the k-th largest value enclose the median with probability
    ``1 - 2 P(B <= k - 1)``. ``k`` is the largest that keeps this at ``confidence`` or more, e.g.
    the 6th and 15th of 20 values. With fewer than 6 values no k does (``(-inf, inf)``).
    """
    xs, n = sorted(values), len(values)
    k, tail = 0, 0.0  # tail = P(B <= k - 1)
    while 2 * (tail + math.comb(n, k) / 2**n) <= 1 - confidence:
        tail += math.comb(n, k) / 2**n
        k += 1
    return (xs[k - 1], xs[n - k]) if k > 0 else (-math.inf, math.inf)


def decided(ratios: list[float], target: float) -> bool:
    """Whether the rounds so far settle ``median ratio <= target`` one way or the other."""
    low, high = median_interval(ratios)
    return high <= target or low > target


def measure(case: Case, min_run_time: float = 0.1, threads: int = 1) -> Result:
    """Time ``case.ours`` and ``case.reference`` in ``case.rounds`` alternating rounds, on
    ``threads`` torch threads; a case with a target and ``max_rounds`` goes on, up to that many
    rounds, until :func:`decided`.

    In each round ``blocked_autorange`` first calls the function until one block of calls lasts
    long enough for the clock's overhead not to matter (this also warms caches, lazy imports and
    the allocator up), then times such blocks for ``min_run_time`` seconds.
    """
    timers = [
        benchmark.Timer("fn()", globals={"fn": fn}, timer=CLOCK, num_threads=threads)
        for fn in (case.ours, case.reference)
    ]
    blocks: tuple[list, list] = ([], [])
    ratios = []
    for r in range(max(case.rounds, case.max_rounds or 0)):
        if r >= case.rounds and (case.target is None or decided(ratios, case.target)):
            break
        order = (0, 1) if r % 2 == 0 else (1, 0)  # neither side always runs first
        now = {i: timers[i].blocked_autorange(min_run_time=min_run_time) for i in order}
        for i, m in now.items():
            blocks[i].append(m)
        ratios.append(now[0].median / now[1].median)
    ours, reference = (benchmark.Measurement.merge(b)[0] for b in blocks)
    return Result(ours, reference, ratios)


def load_cases(path: Path) -> list[Case]:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.benchmarks()


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds < 1 else f"{seconds:.2f} s"


def spread(m: benchmark.Measurement) -> str:
    return f"{fmt(m.median)} (IQR {fmt(m.iqr)})"


def overhead(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.1f} %"


def target_row(case: Case, result: Result) -> str:
    met = "met" if result.ratio <= case.target else "MISSED"
    low, high = result.interval
    return (
        f"| {case.name} | {case.reference_name} | <= {overhead(case.target)} | "
        f"{overhead(result.ratio)} (95 % interval {overhead(low)} to {overhead(high)}, "
        f"{len(result.ratios)} rounds) | {met} |"
    )


def lesson_time_tables() -> list[str]:
    """The lesson times of the last `make test` and `make book`, as Markdown tables."""
    lines = []
    if run := lesson_times.read(lesson_times.RUN_TIMES):
        lines += ["", "## Notebooks (FAST mode, last `make test`)", ""]
        lines += ["| notebook | seconds |", "|---|---|"]
        lines += [f"| {path} | {t['seconds']:.0f} |" for path, t in sorted(run.items())]
    if book := lesson_times.read(lesson_times.BOOK_TIMES):
        lines += ["", "## Notebooks executed by `make book`", ""]
        lines += ["| notebook | FAST s | full s |", "|---|---|---|"]
        lines += [
            f"| {name} | {t.get('fast', '–')} | {t.get('full', '–')} |"
            for name, t in sorted(book.items())
        ]
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench.md")
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads")
    parser.add_argument("files", nargs="*", type=Path, help="bench_*.py files (default: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)  # for the set-up too; bench_image gives OpenCV as many
    sys.path.insert(0, str(ROOT / "bench"))  # the bench files import Case from here
    lines = [
        "# Benchmarks",
        "",
        f"torch {torch.__version__}, torch.get_num_threads() = {torch.get_num_threads()}, "
        + ("wall-clock" if ON_ACCELERATOR else "CPU")
        + " time. Times are medians over the timed blocks of every round (IQR: the spread of "
        "the middle half); ours / reference is the median of the per-round ratios (< 1 means "
        "ours is faster), measured in alternating rounds of this process.",
        "",
        "| benchmark | ours | reference | reference time | ours / reference |",
        "|---|---|---|---|---|",
    ]
    checked = []  # (case, result) of the cases that have a target
    for path in args.files or sorted((ROOT / "bench").glob("bench_*.py")):
        for case in load_cases(path):
            result = measure(case, threads=args.threads)
            row = (
                f"| {case.name} | {spread(result.ours)} | {case.reference_name} | "
                f"{spread(result.reference)} | {result.ratio:.2f}x (IQR {result.ratio_iqr:.2f}) |"
            )
            print(row, flush=True)
            lines.append(row)
            if case.target is not None:
                checked.append((case, result))
    if checked:
        lines += ["", "## Targets", ""]
        lines += ["Overhead: ours / reference - 1, the median over rounds and its 95 % interval."]
        lines += ["", "| benchmark | against | target | overhead | |", "|---|---|---|---|---|"]
        lines += [target_row(case, result) for case, result in checked]
    lines += lesson_time_tables()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    missed = [case.name for case, result in checked if result.ratio > case.target]
    for name in missed:
        print(f"target missed: {name}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
