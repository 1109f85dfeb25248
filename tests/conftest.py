"""Fixtures shared by the test modules."""

import pytest


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """Exercise progress goes to a temporary cache, never to the learner's real one."""
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
