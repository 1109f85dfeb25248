"""Print the one-line notebook summary of `make test` and fail on a notebook over budget.

python tools/summary.py build/notebook_times.json [--budget 120] [--workers 2]
"""

import argparse
import sys
from pathlib import Path

import lesson_times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("times", type=Path)
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per notebook (FAST)")
    parser.add_argument(
        "--workers", type=int, default=1, help="notebooks that ran at once (they share the cores)"
    )
    args = parser.parse_args()
    times = lesson_times.read(args.times)
    if not times:
        print("notebooks: none were run (no timing file)")
        return 1
    parts, over = [], []
    for path, t in sorted(times.items()):
        name = Path(path).stem
        mark = "" if t["passed"] else " FAILED"
        if t["seconds"] > args.budget:
            mark += " OVER BUDGET"
            over.append(name)
        parts.append(f"{name} {t['seconds']:.0f}s{mark}")
    total = sum(t["seconds"] for t in times.values())
    shared = f", {args.workers} at a time, sharing the cores" if args.workers > 1 else ""
    print(
        f"notebooks (FAST{shared}, budget {args.budget:.0f} s each, {total:.0f} s total): "
        + " · ".join(parts)
    )
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
