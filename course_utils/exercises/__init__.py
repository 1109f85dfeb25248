"""Auto-checked exercises.

Each lesson has a module here (``lesson01``, ``lesson02``, ...) whose ``check_*`` functions take the
learner's answer (a value or a function), test it against the course's reference implementation
and return a :class:`CheckResult`. Notebooks show the result; nothing here prints.

A stub that still raises ``NotImplementedError`` is reported as "not attempted" instead of crashing
the notebook, so an unsolved lesson still runs top to bottom. Each result is also recorded under
``cache_dir("progress")`` so that a learner (and ``00_start_here``) can see what has been done.
"""

from __future__ import annotations

import functools
import importlib
import json
import pkgutil
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..runtime import cache_dir, write_atomically

__all__ = [
    "CheckResult",
    "as_tensor",
    "catalogue",
    "close",
    "exercise",
    "progress",
    "progress_by_lesson",
]


@dataclass
class CheckResult:
    """Outcome of one exercise check: ``status`` is "passed", "failed" or "not attempted"."""

    exercise: str
    status: str
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __repr__(self) -> str:
        mark = {"passed": "✅", "failed": "❌", "not attempted": "⏳"}[self.status]
        text = f"{mark} {self.exercise}: {self.status}"
        return f"{text} — {self.message}" if self.message else text


#: every exercise defined so far: {exercise name: module name, e.g. "lesson07"}
_CATALOGUE: dict[str, str] = {}


def _progress_file():
    return cache_dir("progress") / "exercises.json"


def _record(result: CheckResult) -> None:
    done = progress()
    done[result.exercise] = {"status": result.status, "time": time.time()}
    write_atomically(_progress_file(), json.dumps(done, indent=1, sort_keys=True).encode())


def exercise(name: str) -> Callable[[Callable[..., None]], Callable[..., CheckResult]]:
    """Turn ``check(answer)`` that raises ``AssertionError`` on a wrong answer into a checker.

    The wrapped function returns a :class:`CheckResult` and records it; an ``AssertionError``'s
    message becomes the hint shown to the learner.
    """

    def wrap(check: Callable[..., None]) -> Callable[..., CheckResult]:
        _CATALOGUE[name] = check.__module__.rsplit(".", 1)[-1]

        @functools.wraps(check)
        def run(*args, **kwargs) -> CheckResult:
            try:
                check(*args, **kwargs)
                result = CheckResult(name, "passed")
            except NotImplementedError:
                result = CheckResult(name, "not attempted", "replace `raise NotImplementedError`")
            except AssertionError as err:
                result = CheckResult(name, "failed", str(err) or "the answer is not right yet")
            _record(result)
            return result

        return run

    return wrap


def progress() -> dict[str, dict]:
    """What has been checked so far: ``{exercise name: {"status": ..., "time": ...}}``."""
    path = _progress_file()
    if not path.exists():
        return {}
    try:  # written atomically by _record: only an outside edit can break it
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"the exercise record {path} is not valid JSON ({err}); delete it to start a new one"
        ) from None


def catalogue() -> dict[str, str]:
    """Every exercise of the course: ``{exercise name: lesson module}``, e.g.
    ``{"07.1 the forward process q(x_t | x_0)": "lesson07", ...}``, in course order.

    Importing the ``lessonNN`` modules is what fills it (``@exercise`` registers each checker).
    """
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("lesson"):
            importlib.import_module(f"{__name__}.{info.name}")
    return dict(sorted(_CATALOGUE.items()))


def progress_by_lesson() -> dict[str, dict[str, int]]:
    """The learner's progress per lesson: ``{"lesson07": {"passed": 2, "failed": 1,
    "not attempted": 0, "not checked": 1, "total": 4}, ...}``.

    "not checked" counts exercises whose checker has never run; the others are the status of the
    latest check recorded in ``cache_dir("progress")`` (a pass followed by a fail counts as failed:
    the record is what the notebook showed last).
    """
    done = progress()
    table: dict[str, dict[str, int]] = {}
    for name, lesson in catalogue().items():
        row = table.setdefault(
            lesson, dict.fromkeys(["passed", "failed", "not attempted", "not checked", "total"], 0)
        )
        row[done[name]["status"] if name in done else "not checked"] += 1
        row["total"] += 1
    return table


def close(answer, expected, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """Whether the learner's ``answer`` is a tensor of ``expected``'s shape with the same values,
    up to float32 rounding (compared in float64, so the tolerance is not eaten by the cast)."""
    import torch

    return (
        isinstance(answer, torch.Tensor)
        and answer.shape == expected.shape
        and torch.allclose(answer.double(), expected.double(), rtol=rtol, atol=atol)
    )


def as_tensor(out, what: str):
    """Checkers' first question: did the answer return a tensor at all? ``what`` names the call
    in the hint, e.g. ``"my_q_sample(x0, t, noise)"``."""
    import torch

    assert isinstance(out, torch.Tensor), f"{what} should be a tensor, got {type(out).__name__}"
    return out
