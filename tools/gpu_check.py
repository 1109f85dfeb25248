"""`make gpu-check`: everything the course promises about GPUs, checked in one run of <= 10 minutes.

    python tools/gpu_check.py [--budget 570]

On a machine with CUDA it
1. runs every notebook (lessons and solutions) through nbval in FAST mode on the GPU;
2. runs the benchmarks that use the GPU (samplers, fit) there (-> build/bench-gpu.md);
3. runs the full versions of the lessons that fit in the time left, shortest first (by their
   recorded CPU time), each under its own deadline;
4. files the FAST and full times in tools/lesson_times.json (the course map's GPU column) and
   rewrites the README's course map from it.
Everything it prints also goes to build/gpu-check/report.md. On a machine without CUDA it says
so and exits 0: there is nothing to check.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import lesson_times

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "gpu-check"
NBVAL = [
    "--nbval-lax",
    "--nbval-current-env",
    "--nbval-sanitize-with",
    "tests/nbval_sanitize.cfg",
    "-p",
    "no:cacheprovider",
]


def cuda_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


class Report:
    def __init__(self, path: Path):
        self.path, self.lines, self.failed = path, [], False

    def say(self, line: str) -> None:
        print(line, flush=True)
        self.lines.append(line)
        self.path.write_text("\n".join(self.lines) + "\n")


def run(cmd: list[str], env: dict, timeout: float, log: Path) -> tuple[int, float]:
    """Run ``cmd`` with output to ``log``; (exit code, seconds); 124 when it ran out of time."""
    start = time.perf_counter()
    with log.open("w") as out:
        try:
            code = subprocess.run(
                cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            code = 124
    return code, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--budget", type=float, default=570.0, help="seconds for the whole check")
    args = parser.parse_args(argv)
    deadline = time.perf_counter() + args.budget
    gpu = cuda_name()
    if gpu is None:
        print("gpu-check: no CUDA GPU on this machine, so there is nothing to check (exit 0).")
        print("Run `make gpu-check` on a machine with an NVIDIA GPU; it takes about 10 minutes.")
        return 0

    OUT.mkdir(parents=True, exist_ok=True)
    report = Report(OUT / "report.md")
    machine = f"{gpu} ({os.cpu_count()} CPU cores)"
    report.say(f"# GPU check on {machine}\n")
    env = os.environ | {
        "COURSE_DEVICE": "cuda",
        "COURSE_OFFLINE": os.environ.get("COURSE_OFFLINE", "1"),
        "COURSE_CACHE": str(ROOT / "build" / "gpu-cache"),  # exercise records stay out of ~
        "PYTHONPATH": str(ROOT / "tools"),
    }

    # 1. every notebook, FAST, on the GPU; conftest.py writes lesson_times.RUN_TIMES
    times = lesson_times.RUN_TIMES
    times.unlink(missing_ok=True)
    code, seconds = run(
        [sys.executable, "-m", "pytest", *NBVAL, "-q", "notebooks"],
        env | {"COURSE_FAST": "1"},
        timeout=min(300, deadline - time.perf_counter()),
        log=OUT / "fast.log",
    )
    report.say(
        f"FAST nbval of every notebook: exit {code} in {seconds:.0f} s (build/gpu-check/fast.log)"
    )
    report.failed |= code != 0
    if times.exists():
        lesson_times.record(times, "fast", "gpu", machine)
        for path, value in sorted(lesson_times.read(times).items()):
            mark = "" if value["passed"] else "  FAILED"
            report.say(f"- {Path(path).stem}: {value['seconds']:.1f} s{mark}")

    # 2. the benchmarks that run on the GPU (samplers, fit); the box and image ones are CPU code
    code, seconds = run(
        [
            sys.executable,
            "bench/run.py",
            "bench/bench_diffusion.py",
            "bench/bench_train.py",
            "--out",
            str(ROOT / "build" / "bench-gpu.md"),
        ],
        env | {"COURSE_FAST": "1"},
        timeout=max(1, min(150, deadline - time.perf_counter() - 120)),
        log=OUT / "bench.log",
    )
    report.say(f"\nbenchmarks on the GPU: exit {code} in {seconds:.0f} s (build/bench-gpu.md)")
    report.failed |= code not in (0, 124)

    # 3. full lessons, shortest first, while they fit (a GPU runs them several times faster
    # than the recorded CPU times; each gets the time that is left)
    record = lesson_times.load()
    order = sorted(
        lesson_times.lessons(),
        key=lambda s: record.get(s, {}).get("full_cpu", {}).get("seconds", 1e9),
    )
    full_times = {}
    report.say("\nFull lessons on the GPU:")
    for stem in order:
        left = deadline - time.perf_counter()
        if left < 30:
            report.say(f"- {stem}: not run (time is up)")
            continue
        code, seconds = run(
            [
                sys.executable,
                "tools/book.py",
                "--full",
                "--out",
                str(OUT / "html"),
                f"notebooks/{stem}.ipynb",
            ],
            env,
            timeout=left,
            log=OUT / f"full-{stem}.log",
        )
        if code == 0:  # the notebook's own run time, without the book build around it
            seconds = lesson_times.read(lesson_times.BOOK_TIMES).get(stem, {}).get("full", seconds)
            full_times[stem] = {"seconds": round(seconds, 1), "passed": True}
            report.say(f"- {stem}: {seconds:.0f} s")
        else:
            report.failed |= code != 124
            report.say(
                f"- {stem}: {'out of time' if code == 124 else f'FAILED (exit {code})'} after {seconds:.0f} s"
            )
    if full_times:
        full_file = OUT / "full_times.json"
        lesson_times.write(full_file, full_times)
        lesson_times.record(full_file, "full", "gpu", machine)

    # 4. the course map's GPU column
    lesson_times.write_readme()
    report.say("\ntools/lesson_times.json and the README's course map now hold these GPU times.")
    report.say(
        "RESULT: "
        + ("FAILED (see the logs in build/gpu-check/)" if report.failed else "all passed")
    )
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
