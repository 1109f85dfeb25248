import pytest
import torch

from course_utils import data, device
from course_utils.exercises import lesson00, progress

pytestmark = pytest.mark.usefixtures("private_cache")


def test_right_answers_pass_and_are_recorded():
    _, labels = data.digits()
    assert lesson00.check_count_threes(lambda: int((labels == 3).sum())).passed
    assert lesson00.check_first_digits_on_device(
        lambda n, s: data.digits(size=s)[0][:n].to(device())
    ).passed
    assert {k: v["status"] for k, v in progress().items()} == {
        "00.1 count the threes": "passed",
        "00.2 first digits on the device": "passed",
    }


def test_wrong_answers_fail_with_a_hint():
    result = lesson00.check_count_threes(lambda: 180)
    assert result.status == "failed" and "sum" in result.message
    result = lesson00.check_first_digits_on_device(lambda n, s: torch.zeros(n, s, s))
    assert result.status == "failed" and "shape" in result.message


def test_stub_is_not_attempted():
    def stub():
        raise NotImplementedError

    result = lesson00.check_count_threes(stub)
    assert result.status == "not attempted" and "⏳" in repr(result)
    assert progress()["00.1 count the threes"]["status"] == "not attempted"
