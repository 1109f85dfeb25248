"""Repository-wide pytest hooks: time each notebook that nbval runs.

nbval turns every cell into a test item; summing the durations of a notebook's items (the kernel
start-up included) gives the notebook's run time, written to build/notebook_times.json for
`tools/summary.py` (the one-line summary of `make test`) and `make bench`.
"""

import json
import time
from collections import defaultdict
from pathlib import Path

_times: dict[str, float] = defaultdict(float)
_failed: set[str] = set()


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _times[path] += report.duration
        if report.failed:
            _failed.add(path)


def pytest_sessionfinish(session):
    if not _times:
        return
    out = Path(session.config.rootpath) / "build" / "notebook_times.json"
    out.parent.mkdir(exist_ok=True)
    old = json.loads(out.read_text()) if out.exists() else {}
    for path, seconds in _times.items():
        old[path] = {
            "seconds": round(seconds, 1),
            "passed": path not in _failed,
            "when": time.time(),
        }
    out.write_text(json.dumps(old, indent=1, sort_keys=True))
