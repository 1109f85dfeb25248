"""`make bench` (bench/run.py): how it measures, the report it writes, fit's overhead target."""

import math
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import run  # noqa: E402


def work(n: int) -> int:
    return sum(i * i for i in range(n))


def test_measure_gives_the_ratio_of_known_costs():
    case = run.Case("twice the work", lambda: work(20_000), lambda: work(10_000), "once", rounds=4)
    result = run.measure(case, min_run_time=0.02)
    assert len(result.ratios) == 4
    assert 1.5 < result.ratio < 2.7  # 2 on a quiet machine; each round's ratio cancels the load
    assert result.ours.median > result.reference.median > 0
    assert result.ratio_iqr >= 0 and result.ours.iqr >= 0
    assert len(result.ours.times) >= 4  # the blocks of every round, merged


BENCH_FILE = """
from run import Case

def benchmarks():
    return [
        Case("sum 1000 ints", lambda: sum(range(1000)), lambda: sum(range(1000)), "itself",
             rounds=2, target={target}),
    ]
"""


@pytest.mark.parametrize("target, code, verdict", [(10.0, 0, "met"), (0.01, 1, "MISSED")])
def test_report_rows_and_targets(tmp_path, target, code, verdict):
    bench = tmp_path / "bench_sum.py"
    bench.write_text(BENCH_FILE.format(target=target))
    out = tmp_path / "bench.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--out", str(out), str(bench)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == code, done.stderr
    report = out.read_text()
    assert "torch.get_num_threads() = 1, CPU time." in report  # defaults, without a GPU
    row = next(line for line in report.splitlines() if line.startswith("| sum 1000 ints | "))
    # | name | median (IQR ...) | reference | median (IQR ...) | ratio x (IQR ...) |
    assert re.fullmatch(
        r"\| [^|]+ \| [\d.]+ ms \(IQR [\d.]+ ms\) \| itself \| [\d.]+ ms "
        r"\(IQR [\d.]+ ms\) \| \d+\.\d\dx \(IQR \d+\.\d\d\) \|",
        row,
    )
    assert "## Targets" in report and report.count(f"| {verdict} |") == 1


def test_the_median_interval_is_the_binomial_order_statistics():
    values = [float(v) for v in range(20, 0, -1)]  # 20 values, unsorted
    assert run.median_interval(values) == (6.0, 15.0)  # 1 - 2 P(Binomial(20, 1/2) <= 5) = 0.959
    assert run.median_interval(values[:6]) == (15.0, 20.0)  # the smallest and largest of 6
    assert run.median_interval(values[:5]) == (-math.inf, math.inf)  # 5 values cannot say
    # how often the interval misses the median of a skewed distribution: about 4 % (< 5 %)
    rng = random.Random(0)
    misses = sum(
        not (low <= 1.0 <= high)  # the median of exp(N(0, 1)) is 1
        for low, high in (
            run.median_interval([rng.lognormvariate(0, 1) for _ in range(20)]) for _ in range(2000)
        )
    )
    assert 0.02 < misses / 2000 < 0.06


def test_rounds_go_on_until_the_interval_is_on_one_side_of_the_target():
    close = [1.0, 1.1] * 10  # 20 ratios around 1.05: the interval 1.0-1.1 holds the target
    assert not run.decided(close, 1.05)
    assert run.decided(close, 1.1) and run.decided(close, 0.99)  # all above 0.99, none above 1.1
    assert not run.decided([0.9] * 5, 1.05)  # 5 rounds decide nothing, however alike
    assert run.decided([0.9] * 6, 1.05) and run.decided([1.2] * 6, 1.05)


def test_a_clear_result_stops_at_the_first_rounds_and_no_target_never_goes_on():
    twice = run.Case("twice", lambda: work(20_000), lambda: work(10_000), "once", rounds=6)
    assert len(run.measure(twice, min_run_time=0.01).ratios) == 6
    twice.max_rounds = 30
    assert len(run.measure(twice, min_run_time=0.01).ratios) == 6  # no target: nothing to decide
    twice.target = 1.05
    assert len(run.measure(twice, min_run_time=0.01).ratios) == 6  # 2x vs 1.05: decided at once


@pytest.mark.slow
@pytest.mark.serial
def test_fit_overhead_over_the_bare_loop_is_at_most_5_percent():
    (case,) = run.load_cases(ROOT / "bench" / "bench_train.py")
    result = run.measure(case)
    assert (case.target, case.rounds, case.max_rounds) == (1.05, 20, 100)
    low, high = result.interval
    assert result.ratio <= case.target, (
        f"fit is {(result.ratio - 1) * 100:+.1f} % slower (95 % interval {(low - 1) * 100:+.1f} "
        f"to {(high - 1) * 100:+.1f} %, {len(result.ratios)} rounds)"
    )
