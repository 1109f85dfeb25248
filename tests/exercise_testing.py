"""What every exercise-checker test needs: a private progress file, a stub, a hint assertion."""

import pytest


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Progress records go to a temporary cache, never to the learner's real one."""
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))


def stub(*args):
    """An exercise the learner has not started: the notebook's ``raise NotImplementedError``."""
    raise NotImplementedError


def failed(result, *words):
    """Assert that a checker failed and that its hint mentions each of ``words``."""
    assert result.status == "failed", result
    for word in words:
        assert word in result.message, (word, result.message)
    return True
