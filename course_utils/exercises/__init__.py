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
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..runtime import cache_dir

__all__ = ["CheckResult", "as_tensor", "exercise", "progress"]


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


def _record(result: CheckResult) -> None:
    path = cache_dir("progress") / "exercises.json"
    try:
        done = json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:  # a half-written file must never break a lesson
        done = {}
    done[result.exercise] = {"status": result.status, "time": time.time()}
    path.write_text(json.dumps(done, indent=1, sort_keys=True))


def exercise(name: str) -> Callable[[Callable[..., None]], Callable[..., CheckResult]]:
    """Turn ``check(answer)`` that raises ``AssertionError`` on a wrong answer into a checker.

    The wrapped function returns a :class:`CheckResult` and records it; an ``AssertionError``'s
    message becomes the hint shown to the learner.
    """

    def wrap(check: Callable[..., None]) -> Callable[..., CheckResult]:
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
    path = cache_dir("progress") / "exercises.json"
    return json.loads(path.read_text()) if path.exists() else {}


def as_tensor(out, what: str):
    """Checkers' first question: did the answer return a tensor at all? ``what`` names the call
    in the hint, e.g. ``"my_q_sample(x0, t, noise)"``."""
    import torch

    assert isinstance(out, torch.Tensor), f"{what} should be a tensor, got {type(out).__name__}"
    return out
