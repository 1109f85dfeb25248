"""Repository-wide pytest hooks: time each notebook that nbval runs.

nbval turns every cell into a test item; summing the durations of a notebook's items (the kernel
start-up included) gives the notebook's run time, filed in build/notebook_times.json by
``tools/lesson_times.py`` (read by `tools/summary.py`, the one-line summary of `make test`, and by
`make bench`).
"""

import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))
import lesson_times  # noqa: E402  (tools/ is a folder of scripts, not a package)

_times: dict[str, float] = defaultdict(float)
_failed: set[str] = set()


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _times[path] += report.duration
        if report.failed:
            _failed.add(path)


def pytest_sessionfinish(session):
    # Under pytest-xdist the controller receives every worker's reports too: it alone writes the
    # file, so that a worker's partial times never overwrite the whole run's.
    if _times and not hasattr(session.config, "workerinput"):
        lesson_times.save_run_times(_times, _failed)
