"""Every exercise of the course: registered, solved in its solutions notebook, tested with wrong
answers -- and the per-lesson progress that 00_start_here shows from the checkers' records."""

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

from course_utils.exercises import catalogue, progress_by_lesson

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = catalogue()
LESSONS = sorted(set(CATALOGUE.values()))


def checker_names(lesson: str) -> list[str]:
    module = importlib.import_module(f"course_utils.exercises.{lesson}")
    return sorted(name for name in dir(module) if name.startswith("check_"))


def test_every_exercise_module_is_catalogued():
    modules = sorted(p.stem for p in (ROOT / "course_utils" / "exercises").glob("lesson*.py"))
    assert LESSONS == modules
    for lesson in LESSONS:  # one registered exercise per checker function, and nothing else
        assert len(checker_names(lesson)) == list(CATALOGUE.values()).count(lesson), lesson
    assert all(re.match(r"\d\d\.\d+ ", name) for name in CATALOGUE), list(CATALOGUE)


@pytest.mark.parametrize("lesson", LESSONS)
def test_solutions_notebook_passes_every_checker(lesson):
    """nbval runs the solutions notebooks; each checker call there is followed by an assertion
    that it passed, so a solution the checker rejects fails `make test`."""
    number = lesson.removeprefix("lesson")
    (path,) = (ROOT / "notebooks" / "solutions").glob(f"{number}_*_solutions.ipynb")
    cells = [c["source"] for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    for name in checker_names(lesson):
        calls = [src for src in cells if f"{lesson}.{name}(" in src]
        assert calls, f"{path.name} never calls {lesson}.{name}"
        assert all(".passed" in src and "assert" in src for src in calls), (
            f"{path.name}: the cell calling {lesson}.{name} must assert that it passed"
        )


def _tests_that_expect_failure(lesson: str) -> set[str]:
    """Checker names used inside test functions that also assert a failed result (with the shared
    ``failed()`` helper, a lesson's own ``failure()`` helper or a plain status comparison)."""
    tree = ast.parse((ROOT / "tests" / f"test_exercises_{lesson}.py").read_text())
    found = set()
    for fn in ast.walk(tree):
        if not (isinstance(fn, ast.FunctionDef) and fn.name.startswith("test")):
            continue
        source = ast.unparse(fn)
        if not any(mark in source for mark in ("failed(", "failure(", "'failed'")):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute) and node.attr.startswith("check_"):
                found.add(node.attr)
    return found


@pytest.mark.parametrize("lesson", LESSONS)
def test_every_checker_is_tested_with_a_wrong_answer(lesson):
    missing = set(checker_names(lesson)) - _tests_that_expect_failure(lesson)
    assert not missing, f"tests/test_exercises_{lesson}.py never feeds a wrong answer to {missing}"


@pytest.mark.usefixtures("private_cache")
def test_progress_by_lesson_counts_the_latest_result_of_each_exercise():
    from course_utils.exercises import lesson00

    start = progress_by_lesson()
    assert list(start) == LESSONS
    assert all(row["not checked"] == row["total"] > 0 for row in start.values())

    def count_threes_wrong():
        return 0

    def stub(*args):
        raise NotImplementedError

    lesson00.check_count_threes(count_threes_wrong)
    lesson00.check_first_digits_on_device(stub)
    row = progress_by_lesson()["lesson00"]
    assert row == {"passed": 0, "failed": 1, "not attempted": 1, "not checked": 0, "total": 2}

    lesson00.check_count_threes(lambda: 183)  # sklearn's digits hold 183 threes
    row = progress_by_lesson()["lesson00"]
    assert (row["passed"], row["failed"], row["not attempted"]) == (1, 0, 1)
    assert progress_by_lesson()["lesson01"]["not checked"] == start["lesson01"]["total"]


@pytest.mark.usefixtures("private_cache")
def test_the_progress_record_is_written_atomically(monkeypatch):
    import os

    from course_utils import cache_dir, runtime
    from course_utils.exercises import lesson00, progress

    assert lesson00.check_count_threes(lambda: 183).passed
    before = (cache_dir("progress") / "exercises.json").read_text()

    def crash(*args):  # the writer dies between writing the new file and renaming it
        raise KeyboardInterrupt

    monkeypatch.setattr(runtime.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        lesson00.check_count_threes(lambda: 0)
    monkeypatch.setattr(runtime.os, "replace", os.replace)
    assert (cache_dir("progress") / "exercises.json").read_text() == before  # old record intact
    assert progress()["00.1 count the threes"]["status"] == "passed"


@pytest.mark.usefixtures("private_cache")
def test_a_broken_progress_record_names_the_file_and_the_fix():
    from course_utils import cache_dir
    from course_utils.exercises import progress

    (cache_dir("progress") / "exercises.json").write_text('{"00.1 count the thr')  # edited by hand
    with pytest.raises(ValueError, match=r"exercises\.json is not valid JSON.*delete it"):
        progress()
