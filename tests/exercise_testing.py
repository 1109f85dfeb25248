"""What every exercise-checker test needs: a stub, a hint assertion, the two standard checks.

Test modules also mark themselves ``pytest.mark.usefixtures("private_cache")`` (tests/conftest.py).
"""

from course_utils.exercises import progress


def stub(*args):
    """An exercise the learner has not started: the notebook's ``raise NotImplementedError``."""
    raise NotImplementedError


def failed(result, *words):
    """Assert that a checker failed and that its hint mentions each of ``words``."""
    assert result.status == "failed", result
    for word in words:
        assert word in result.message, (word, result.message)
    return True


def assert_right_answers_pass(checks):
    """``checks = {name: (checker, right_answer)}``: every answer passes, and progress() says so."""
    for check, answer in checks.values():
        result = check(answer)
        assert result.passed, result
    assert {k: v["status"] for k, v in progress().items()} == dict.fromkeys(checks, "passed")


def assert_stub_not_attempted(checks, name):
    """An unstarted exercise is reported and recorded as "not attempted", not as a failure."""
    check, _ = checks[name]
    assert check(stub).status == "not attempted"
    assert progress()[name]["status"] == "not attempted"
