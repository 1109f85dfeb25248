"""The runtime contract of DESIGN.md §2, checked in fresh interpreters where import-time state matters."""

import json
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from course_utils import runtime


def run_python(code: str, **env) -> str:
    """Run ``code`` in a fresh interpreter with extra environment variables; return its stdout."""
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("COURSE_")}
    full_env.update(env)
    out = subprocess.run(
        [sys.executable, "-c", code], env=full_env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


@pytest.mark.parametrize(
    "value, expected", [("1", True), ("0", False), ("", False), ("true", True)]
)
def test_fast_flag_follows_environment(value, expected):
    out = run_python("import course_utils; print(course_utils.FAST)", COURSE_FAST=value)
    assert out == str(expected)


def test_course_device_is_honoured(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert runtime.device() == torch.device("cpu")
    monkeypatch.setenv("COURSE_DEVICE", "meta")  # any valid torch device name is accepted
    assert runtime.device() == torch.device("meta")


def test_course_device_in_a_fresh_process():
    code = "import course_utils, torch; print(course_utils.device())"
    assert run_python(code, COURSE_DEVICE="cpu") == "cpu"


def test_default_device_prefers_accelerators(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    expected = (
        "cuda"
        if torch.cuda.is_available()
        else "mps"
        if torch.backends.mps.is_available()
        else "cpu"
    )
    assert runtime.device().type == expected


def test_unavailable_forced_device_is_a_clear_error(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        runtime.device()


def test_misspelled_device_names_the_variable_and_the_valid_values(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "gpu0")
    with pytest.raises(
        ValueError, match=r"COURSE_DEVICE='gpu0' is not a device name; valid values: cpu, cuda"
    ):
        runtime.device()
    monkeypatch.delenv("COURSE_DEVICE")
    with pytest.raises(ValueError, match=r"device='cdua' is not a device name; valid values: cpu"):
        runtime.device("cdua")


def test_an_explicit_device_gets_the_same_friendly_message(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    with pytest.raises(
        RuntimeError, match=r"device='cuda' but CUDA is not available.*device='cpu'"
    ):
        runtime.device("cuda")
    assert runtime.device("cpu") == torch.device("cpu")
    assert runtime.device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("value", ["2", "fast", "full", "y"])
def test_unknown_flag_values_are_refused_not_read_as_off(value):
    code = "import course_utils"
    with pytest.raises(subprocess.CalledProcessError) as err:
        run_python(code, COURSE_FAST=value)
    assert f"COURSE_FAST={value!r} is not a yes/no value" in err.value.stderr
    assert (
        run_python("import course_utils; print(course_utils.FAST)", COURSE_FAST=" Off ") == "False"
    )


def test_online_probes_through_the_proxy_the_downloads_use(monkeypatch):
    for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert runtime._probe_address("download.pytorch.org", 443) == ("download.pytorch.org", 443)
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    assert runtime._probe_address("download.pytorch.org", 443) == ("proxy.example", 3128)
    monkeypatch.setenv("no_proxy", "localhost,.pytorch.org")
    assert runtime._probe_address("download.pytorch.org", 443) == ("download.pytorch.org", 443)
    monkeypatch.delenv("no_proxy")
    seen = []

    def connect(address, timeout):
        seen.append(address)
        raise OSError("refused (test)")

    monkeypatch.delenv("COURSE_OFFLINE", raising=False)
    monkeypatch.setattr(runtime, "_ONLINE", None)  # restored after the test
    monkeypatch.setattr(socket, "create_connection", connect)
    assert runtime.online(refresh=True) is False
    assert seen == [("proxy.example", 3128)]


def test_seed_everything_repeats_python_numpy_torch():
    import random

    def draw():
        return random.random(), np.random.rand(), torch.rand(3).tolist()

    runtime.seed_everything(123)
    first = draw()
    runtime.seed_everything(123)
    assert draw() == first
    runtime.seed_everything(124)
    assert draw() != first


def test_offline_env_forces_offline(monkeypatch):
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    assert runtime.online(refresh=True) is False


def test_unreachable_network_means_offline_quickly(monkeypatch):
    """With every connection refused, online() answers False at once and remembers it."""
    monkeypatch.delenv("COURSE_OFFLINE", raising=False)
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(runtime, "_ONLINE", None)
    assert runtime.online() is False
    assert runtime.online() is False
    assert len(calls) == 1  # the answer is cached: nothing waits on the network twice


def test_mark_offline(monkeypatch):
    monkeypatch.delenv("COURSE_OFFLINE", raising=False)
    monkeypatch.setattr(runtime, "_ONLINE", True)
    runtime.mark_offline()
    assert runtime.online() is False


def test_cache_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "c"))
    path = runtime.cache_dir("datasets", "x")
    assert path == tmp_path / "c" / "datasets" / "x" and path.is_dir()


def test_cache_dir_default_is_outside_the_repo():
    out = run_python(
        "import course_utils; print(course_utils.cache_dir())", HOME="/tmp/course-home"
    )
    assert out == "/tmp/course-home/.cache/course_utils"


def test_package_exports_the_contract():
    out = run_python(
        "import json, course_utils as c; "
        "print(json.dumps([callable(c.device), callable(c.seed_everything), callable(c.online), "
        "isinstance(c.FAST, bool), callable(c.cache_dir)]))"
    )
    assert json.loads(out) == [True, True, True, True, True]


def test_environment_report(monkeypatch):
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    env = runtime.environment()
    assert env["torch"] == torch.__version__
    assert env["device"] == "cpu" and env["accelerator"] == "none"
    assert env["online"] == "False"
    assert env["FAST mode"] == str(runtime.FAST)
