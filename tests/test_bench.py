"""`make bench` (bench/run.py): how it measures, the report it writes, fit's overhead target."""

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


@pytest.mark.slow
def test_fit_overhead_over_the_bare_loop_is_at_most_5_percent():
    (case,) = run.load_cases(ROOT / "bench" / "bench_train.py")
    result = run.measure(case)
    assert case.target == 1.05
    assert result.ratio <= case.target, f"fit is {(result.ratio - 1) * 100:+.1f} % slower"
