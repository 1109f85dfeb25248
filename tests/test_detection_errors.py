"""detection_errors: each kind of mistake made on purpose, and the counts adding up."""

import pytest
import torch

from course_utils.detection import ERROR_KINDS, detection_errors


def _pred(boxes, labels, scores):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "scores": torch.tensor(scores, dtype=torch.float32),
    }


TARGET = {
    "boxes": torch.tensor([[0.0, 0, 10, 10], [50, 50, 70, 70]]),
    "labels": torch.tensor([1, 2]),
}


@pytest.mark.parametrize(
    "boxes, labels, scores, kind",
    [
        ([0, 0, 10, 10], [1], [0.9], "correct"),
        ([0, 0, 10, 10], [2], [0.9], "wrong_class"),
        ([5, 0, 15, 10], [1], [0.9], "mislocated"),  # IoU 1/3 with its object
        ([30, 30, 40, 40], [1], [0.9], "background"),
    ],
)
def test_one_detection_of_each_kind(boxes, labels, scores, kind):
    counts = detection_errors([_pred(boxes, labels, scores)], [TARGET])
    assert counts[kind] == 1 and sum(counts[k] for k in ERROR_KINDS if k != "missed") == 1
    assert counts["missed"] == 2 - counts["correct"]


def test_the_second_box_on_a_found_object_is_a_duplicate_whatever_the_order():
    boxes = [[0, 0, 10, 10], [0, 0, 10, 9]]
    for scores in ([0.9, 0.8], [0.8, 0.9]):  # the higher score is "correct", the other not
        counts = detection_errors([_pred(boxes, [1, 1], scores)], [TARGET])
        assert (counts["correct"], counts["duplicate"], counts["missed"]) == (1, 1, 1)


def test_low_scores_do_not_count_and_everything_adds_up():
    pred = _pred([[0, 0, 10, 10], [50, 50, 70, 70]], [1, 2], [0.9, 0.3])
    assert detection_errors([pred], [TARGET])["correct"] == 1
    assert detection_errors([pred], [TARGET], score_threshold=0.2)["correct"] == 2
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    counts = detection_errors([pred, pred], [TARGET, empty])
    assert counts["correct"] + counts["missed"] == 2 and counts["background"] == 1


def test_bad_inputs_name_the_fix():
    pred = _pred([0, 0, 10, 10], [1], [0.9])
    with pytest.raises(ValueError, match="one per image"):
        detection_errors([pred], [TARGET, TARGET])
    with pytest.raises(ValueError, match=r"IoU in \[0, 1\]"):
        detection_errors([pred], [TARGET], iou_threshold=50)
    with pytest.raises(ValueError, match="probability"):
        detection_errors([pred], [TARGET], score_threshold=1.5)
