"""Fixtures shared by the test modules."""

import pytest


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """Exercise progress goes to a temporary cache, never to the learner's real one."""
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))


@pytest.fixture(scope="module")
def one_cpu_thread():
    """The module's tests on one CPU thread. For small models a second thread costs more in
    synchronisation than it saves, and on a busy machine far more (10-20x slower measured with 2
    threads on 2 loaded cores). Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    from course_utils.zoo import cpu_threads

    with cpu_threads():
        yield
