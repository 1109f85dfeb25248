"""Measured run times of every lesson, and the time column of the README's course map.

The one module that reads and writes lesson times; three files hold them:

- build/notebook_times.json: each notebook's last run through nbval (`make test` starts it afresh),
  ``{"notebooks/NN_x.ipynb": {"seconds", "passed", "when"}}``, written by conftest.py through
  :func:`save_run_times`, read by tools/summary.py (the summary line) and `make bench`;
- build/book_times.json: each page's last FAST and full run by `make book`,
  ``{"NN_x": {"fast": s, "full": s}}``, written by tools/book.py through :func:`save_book_times`
  and read by `make bench`;
- tools/lesson_times.json, the record: for each lesson and each of "fast_cpu", "full_cpu",
  "fast_gpu", "full_gpu" the seconds of one measured run, when and on what it was measured. Only
  measurements go in: ``record`` files a timing file of `make test` or `make book`, and
  `--device gpu` files a run made on a GPU machine.

    python tools/lesson_times.py record build/notebook_times.json --mode fast  # after make test TEST_WORKERS=1
    python tools/lesson_times.py record build/book_times.json --mode full      # after make book FULL=1
    python tools/lesson_times.py readme   # rewrite the README's time column from the record
    python tools/lesson_times.py check    # exit 1 if a lesson has no FAST time or README disagrees
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "tools" / "lesson_times.json"
RUN_TIMES = ROOT / "build" / "notebook_times.json"
BOOK_TIMES = ROOT / "build" / "book_times.json"
README = ROOT / "README.md"


def lessons() -> list[str]:
    return sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def read(path: Path) -> dict:
    """One of the three timing files as a dict; ``{}`` when it does not exist (yet)."""
    return json.loads(path.read_text()) if path.exists() else {}


def write(path: Path, times: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(times, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def load() -> dict:
    """The record, tools/lesson_times.json."""
    return read(RECORD)


def save_run_times(seconds: dict[str, float], failed: set[str], path: Path = RUN_TIMES) -> None:
    """Merge one pytest session's notebook times (path -> seconds) into build/notebook_times.json.

    Notebooks the session did not run keep their entry: `make test` removes the file first, so
    that one run's file holds that run only, while running a single notebook updates its line.
    """
    times = read(path)
    when = time.time()
    for notebook, s in seconds.items():
        times[notebook] = {"seconds": round(s, 1), "passed": notebook not in failed, "when": when}
    write(path, times)


def save_book_times(seconds: dict[str, float], mode: str, path: Path = BOOK_TIMES) -> None:
    """Merge one `make book` run's page times (stem -> seconds, ``mode`` "fast" or "full")."""
    times = read(path)
    for page, s in seconds.items():
        times.setdefault(page, {})[mode] = round(s, 1)
    write(path, times)


def record(times_file: Path, mode: str, device: str, machine: str) -> dict:
    """Merge the lesson times of one `make test` / `make book` run into the record."""
    if not times_file.exists():
        raise FileNotFoundError(f"{times_file}: no timing file, run `make test` or `make book`")
    times = read(times_file)
    out = load()
    today = datetime.date.today().isoformat()
    for key, value in times.items():
        stem = Path(key).stem
        seconds = value.get("seconds", value.get(mode))
        if stem not in lessons() or seconds is None or value.get("passed") is False:
            continue  # solutions notebooks, failed runs and other modes are not lesson times
        entry = {"seconds": round(float(seconds), 1), "date": today, "machine": machine}
        out.setdefault(stem, {})[f"{mode}_{device}"] = entry
    write(RECORD, out)
    return out


def human(seconds: float | None) -> str:
    """12.3 -> "12 s", 1000 -> "17 min", None -> "–"."""
    if seconds is None:
        return "–"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def cell(entry: dict, device: str) -> str:
    fast, full = (entry.get(f"{m}_{device}", {}).get("seconds") for m in ("fast", "full"))
    return f"{human(fast)} · {human(full)}"


def readme_text(text: str, times: dict) -> str:
    """The README with the last two cells (CPU, GPU) of every course-map row rewritten."""

    def row(match: re.Match) -> str:
        number, rest = match.group(1), match.group(2)
        cells = rest.split(" | ")
        stem = next((s for s in lessons() if s.startswith(number + "_")), None)
        if stem is None or len(cells) < 4:
            return match.group(0)
        entry = times.get(stem, {})
        return (
            f"| {number} | "
            + " | ".join([*cells[:-2], cell(entry, "cpu"), cell(entry, "gpu")])
            + " |"
        )

    return re.sub(r"^\| (\d\d) \| (.*) \|$", row, text, flags=re.M)


def write_readme() -> None:
    """Rewrite the README's course-map times from the record."""
    README.write_text(readme_text(README.read_text(), load()))


def problems() -> list[str]:
    times, text = load(), README.read_text()
    out = [
        f"{s}: no FAST CPU time recorded" for s in lessons() if "fast_cpu" not in times.get(s, {})
    ]
    out += [f"{s}: not in the README's course map" for s in lessons() if f"| {s[:2]} |" not in text]
    if readme_text(text, times) != text:
        out.append(
            "README's course-map times differ from tools/lesson_times.json: run "
            "`python tools/lesson_times.py readme`"
        )
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("command", choices=["record", "readme", "check"])
    parser.add_argument("times", type=Path, nargs="?", help="timing file (record)")
    parser.add_argument("--mode", choices=["fast", "full"], default="fast")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--machine", default="2-core CPU, no GPU (the course's CI machine)")
    args = parser.parse_args(argv)
    if args.command == "record":
        record(args.times, args.mode, args.device, args.machine)
        args.command = "readme"
    if args.command == "readme":
        write_readme()
        return 0
    found = problems()
    print("\n".join(found) or "lesson times: README and record agree")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
