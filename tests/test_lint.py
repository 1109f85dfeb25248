"""`make lint` as a test, so CI keeps the package, tests and notebooks clean."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "course_utils",
            "tests",
            "tools",
            "bench",
            "notebooks",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


FORMATTED = ["course_utils", "tests", "tools", "bench", "conftest.py"]  # as `make lint` checks


def test_ruff_format_keeps_the_layout():
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *FORMATTED],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, "run `ruff format " + " ".join(FORMATTED) + "`:\n" + out.stdout


def test_fmt_skip_is_rare():
    # `# fmt: skip` only where the formatter would hurt a teaching layout (an aligned table)
    skips = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in FORMATTED
        for path in sorted(
            (ROOT / folder).rglob("*.py") if (ROOT / folder).is_dir() else [ROOT / folder]
        )
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "fmt: skip" in line or "fmt: off" in line
    ]
    assert len(skips) <= 10, f"{len(skips)} formatter exemptions: " + ", ".join(skips)
