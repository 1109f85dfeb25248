"""Every public function that takes images, labels, boxes or timesteps, fed the bad inputs learners
really produce (issue 25, item 2): each gives a clear error whose message names the fix.

One row per (function, bad input): the call, the error type and a fragment of the message. The
guards come from ``course_utils.checks``; a model the learner builds from a course class is
guarded in its own ``forward``, like a shipped one."""

import numpy as np
import pytest
import torch

from course_utils import image, plot
from course_utils.detection import (
    CenterNet,
    CenterNetHead,
    DETRHead,
    RetinaNet,
    box_iou,
    centernet_heatmap,
    mean_average_precision,
)
from course_utils.diffusion import (
    VAE,
    Condition,
    ConditionalUNet,
    NoiseSchedule,
    ddim_invert,
    diffusion_loss,
    flow_matching_loss,
    fm_path,
    frechet_distance,
    kl_divergence,
    q_sample,
    recognition_accuracy,
    sample_ddim,
    sample_ddpm,
    sample_euler,
    sample_heun,
    to01,
)
from course_utils.features import (
    cluster_features,
    cluster_scores,
    compare_classifiers,
    cosine_similarity_matrix,
    expected_calibration_error,
    extract_features,
    nearest_neighbours,
    plot_neighbours,
    reliability_diagram,
    topk_predictions,
)
from course_utils.models import LeNet5, MiniVGG, resnet_small
from course_utils.segmentation import (
    DiceLoss,
    FocalLossSegmentation,
    MaskHead,
    UNet,
    mask_loss,
    segment,
)
from course_utils.train import evaluate, fit, predict
from course_utils.transfer import (
    DANN,
    accuracy,
    adapt_batch_norm,
    adapt_domain,
    augmentation,
    fine_tune,
    mmd_loss,
    one_cycle,
    replace_head,
    resnet_blocks,
    warmup_cosine,
)

g = torch.Generator().manual_seed(0)
RGB = torch.rand(2, 3, 16, 16, generator=g)  # a good batch of colour images in [0, 1]
GREY = torch.rand(2, 1, 32, 32, generator=g)  # what LeNet5 takes
SCENES = torch.rand(2, 3, 32, 32, generator=g)  # what the detectors take (multiples of 16)
FEATS_NAN = torch.rand(4, 3).index_fill_(0, torch.tensor([1]), float("nan"))
NAN = RGB.clone().index_fill_(0, torch.tensor([0]), float("nan"))
BOX = torch.tensor([[2.0, 3.0, 12.0, 14.0]])
XYWH = torch.tensor([[8.0, 9.0, 6.0, 5.0]])  # x, y, w, h: x2 = 6 < x1 = 8 read as xyxy
LOGITS = torch.randn(2, 3, 4, 4, generator=g)
TARGET = torch.randint(0, 3, (2, 4, 4), generator=g)


def target(boxes=BOX, labels=(1,)):
    return {"boxes": boxes, "labels": torch.tensor(labels)}


def pred(boxes=BOX, labels=(1,)):
    return {**target(boxes, labels), "scores": torch.full((len(boxes),), 0.9)}


def training(model):
    return model.train()


# (id, call, error, fragment of the message)
IMAGE_CASES = [
    (
        "rgb_to_gray uint8",
        lambda: image.rgb_to_gray((RGB * 255).byte()),
        TypeError,
        r"x.float\(\) / 255",
    ),
    (
        "rgb_to_gray 0-255",
        lambda: image.rgb_to_gray(RGB * 255),
        ValueError,
        r"\[0, 255\]: use x / 255",
    ),
    ("rgb_to_gray numpy", lambda: image.rgb_to_gray(RGB.numpy()), TypeError, r"torch.from_numpy"),
    ("rgb_to_gray list", lambda: image.rgb_to_gray(list(RGB)), TypeError, r"torch.stack"),
    ("rgb_to_gray HWC", lambda: image.rgb_to_gray(RGB[0].permute(1, 2, 0)), ValueError, r"HWC"),
    ("rgb_to_gray grey", lambda: image.rgb_to_gray(GREY), ValueError, r"3-channel images, got 1"),
    ("rgb_to_lab NaN", lambda: image.rgb_to_lab(NAN), ValueError, r"NaN or infinite"),
    (
        "rgb_to_hsv normalised",
        lambda: image.rgb_to_hsv(image.normalize(RGB)),
        ValueError,
        r"denormalize",
    ),
    ("hsv_to_rgb empty", lambda: image.hsv_to_rgb(RGB[:0]), ValueError, r"empty"),
    ("normalize twice", lambda: image.normalize(image.normalize(RGB)), ValueError, r"denormalize"),
    ("to_numpy batch", lambda: image.to_numpy(RGB), ValueError, r"\[C, H, W\]"),
    ("to_numpy -1..1", lambda: image.to_numpy(RGB[0] * 2 - 1), ValueError, r"\(x \+ 1\) / 2"),
    ("convolve NaN", lambda: image.convolve(NAN, image.KERNELS["sobel_x"]), ValueError, r"NaN"),
    ("equalize_histogram RGB", lambda: image.equalize_histogram(RGB[0]), ValueError, r"1-channel"),
    (
        "mixup HWC",
        lambda: image.mixup(RGB.permute(0, 2, 3, 1), None, RGB.permute(0, 2, 3, 1), None),
        ValueError,
        r"HWC",
    ),
    ("channel_stats no batch", lambda: image.channel_stats(RGB[0]), ValueError, r"unsqueeze\(0\)"),
    ("to_display batch", lambda: plot.to_display(RGB), ValueError, r"show_images"),
    ("to_display 0-255", lambda: plot.to_display(RGB[0] * 255), ValueError, r"x / 255"),
    ("to_display HWC tensor", lambda: plot.to_display(RGB[0].permute(1, 2, 0)), ValueError, r"HWC"),
    (
        "to_display CHW array",
        lambda: plot.to_display(RGB[0].numpy()),
        ValueError,
        r"transpose\(1, 2, 0\)",
    ),
    ("draw_boxes xywh", lambda: plot.draw_boxes(RGB[0], XYWH), ValueError, r"xywh"),
]

MODEL_CASES = [
    (
        "LeNet5 28x28",
        lambda: LeNet5()(GREY[:, :, 2:-2, 2:-2]),
        ValueError,
        r"32x32 images, got 28x28",
    ),
    (
        "LeNet5 RGB",
        lambda: LeNet5()(torch.rand(2, 3, 32, 32)),
        ValueError,
        r"1-channel images, got 3",
    ),
    ("LeNet5 HWC", lambda: LeNet5()(GREY.permute(0, 2, 3, 1)), ValueError, r"HWC"),
    ("LeNet5 no batch", lambda: LeNet5()(GREY[0]), ValueError, r"unsqueeze\(0\)"),
    ("LeNet5 uint8", lambda: LeNet5()((GREY * 255).byte()), TypeError, r"x.float\(\) / 255"),
    ("LeNet5 numpy", lambda: LeNet5()(GREY.numpy()), TypeError, r"torch.from_numpy"),
    ("LeNet5 list", lambda: LeNet5()(list(GREY)), TypeError, r"torch.stack"),
    ("LeNet5 empty", lambda: LeNet5()(GREY[:0]), ValueError, r"empty"),
    ("LeNet5 NaN", lambda: LeNet5()(GREY.clone().fill_(float("nan"))), ValueError, r"NaN"),
    (
        "MiniVGG too small",
        lambda: MiniVGG().eval()(torch.rand(1, 1, 1, 1)),
        ValueError,
        r"at least",
    ),
    ("resnet_small RGB", lambda: resnet_small()(RGB), ValueError, r"1-channel images, got 3"),
]

DETECTION_CASES = [
    ("CenterNet 0-255", lambda: CenterNet().eval()(SCENES * 255), ValueError, r"x / 255"),
    ("CenterNet HWC", lambda: CenterNet().eval()(SCENES.permute(0, 2, 3, 1)), ValueError, r"HWC"),
    (
        "CenterNet 30x30",
        lambda: CenterNet().eval()(SCENES[..., :30, :30]),
        ValueError,
        r"divisible by 16",
    ),
    ("CenterNet empty list", lambda: CenterNet().eval()([]), ValueError, r"empty inputs"),
    ("CenterNet uint8", lambda: CenterNet().eval()((SCENES * 255).byte()), TypeError, r"/ 255"),
    ("CenterNet numpy", lambda: CenterNet().eval()(SCENES.numpy()), TypeError, r"from_numpy"),
    (
        "CenterNet 0-based targets",
        lambda: training(CenterNet())(SCENES, [target(labels=(0,))] * 2),
        ValueError,
        r"use y \+ 1",
    ),
    (
        "CenterNet float labels",
        lambda: training(CenterNet())(SCENES, [{"boxes": BOX, "labels": torch.tensor([1.0])}] * 2),
        TypeError,
        r"y.long\(\)",
    ),
    (
        "CenterNet labels > classes",
        lambda: training(CenterNet(3))(SCENES, [target(labels=(7,))] * 2),
        ValueError,
        r"in \[1, 3\]",
    ),
    (
        "CenterNet xywh targets",
        lambda: training(CenterNet())(SCENES, [target(XYWH)] * 2),
        ValueError,
        r"xywh",
    ),
    (
        "CenterNet too few targets",
        lambda: training(CenterNet())(SCENES, [target()]),
        ValueError,
        r"1 targets, 2 images",
    ),
    (
        "RetinaNet 0-based targets",
        lambda: training(RetinaNet())(SCENES, [target(labels=(0,))] * 2),
        ValueError,
        r"use y \+ 1",
    ),
    ("CenterNetHead 0 classes", lambda: CenterNetHead(8, 0), ValueError, r"num_classes >= 1"),
    ("DETRHead 0 classes", lambda: DETRHead(8, 0), ValueError, r"num_classes >= 1"),
    ("CenterNet 0 classes", lambda: CenterNet(num_classes=0), ValueError, r"num_classes >= 1"),
    (
        "centernet_heatmap label 0",
        lambda: centernet_heatmap(BOX, torch.tensor([0]), 3, (8, 8), 4),
        ValueError,
        r"1-based",
    ),
    (
        "mAP 0-based preds",
        lambda: mean_average_precision([pred(labels=(0,))], [target()]),
        ValueError,
        r"use y \+ 1",
    ),
    (
        "mAP 0-based targets",
        lambda: mean_average_precision([pred()], [target(labels=(0,))]),
        ValueError,
        r"use y \+ 1",
    ),
    (
        "mAP float labels",
        lambda: mean_average_precision([{**pred(), "labels": torch.tensor([1.0])}], [target()]),
        TypeError,
        r"y.long\(\)",
    ),
    ("mAP xywh", lambda: mean_average_precision([pred(XYWH)], [target()]), ValueError, r"xywh"),
    (
        "mAP lengths",
        lambda: mean_average_precision([pred(), pred()], [target()]),
        ValueError,
        r"2 predictions for 1 images",
    ),
    (
        "mAP labels per box",
        lambda: mean_average_precision([pred(labels=(1, 2))], [target()]),
        ValueError,
        r"one entry per object",
    ),
    ("box_iou xywh", lambda: box_iou(XYWH, BOX), ValueError, r"xywh"),
    ("box_iou NaN", lambda: box_iou(BOX * float("nan"), BOX), ValueError, r"NaN"),
    ("box_iou int", lambda: box_iou(BOX.long(), BOX), ValueError, r"boxes.float\(\)"),
]

SEGMENTATION_CASES = [
    (
        "UNet grey",
        lambda: UNet(3, 2, base=4, depth=2)(GREY),
        ValueError,
        r"3-channel images, got 1",
    ),
    (
        "UNet too small",
        lambda: UNet(3, 2, base=4, depth=3)(RGB[..., :4, :4]),
        ValueError,
        r"at least 8x8",
    ),
    ("UNet HWC", lambda: UNet(3, 2, base=4, depth=2)(RGB.permute(0, 2, 3, 1)), ValueError, r"HWC"),
    ("MaskHead 0 classes", lambda: MaskHead(8, 0), ValueError, r"num_classes >= 1"),
    (
        "segment 0-255",
        lambda: segment(UNet(3, 2, base=4, depth=2), RGB * 255),
        ValueError,
        r"x / 255",
    ),
    ("DiceLoss NaN", lambda: DiceLoss()(LOGITS * float("nan"), TARGET), ValueError, r"NaN"),
    (
        "DiceLoss label 3 of 3",
        lambda: DiceLoss()(LOGITS, TARGET + 1),
        ValueError,
        r"0-based .*use y - 1",
    ),
    (
        "Focal float target",
        lambda: FocalLossSegmentation()(LOGITS, TARGET.float()),
        ValueError,
        r"integer target",
    ),
    (
        "Focal numpy target",
        lambda: FocalLossSegmentation()(LOGITS, TARGET.numpy()),
        TypeError,
        r"from_numpy",
    ),
    (
        "mask_loss NaN",
        lambda: mask_loss(
            torch.full((1, 3, 4, 4), float("nan")), torch.tensor([1]), torch.zeros(1, 4, 4)
        ),
        ValueError,
        r"NaN",
    ),
    (
        "mask_loss 0-based",
        lambda: mask_loss(torch.randn(2, 3, 4, 4), torch.tensor([0, 2]), torch.zeros(2, 4, 4)),
        ValueError,
        r"use y \+ 1",
    ),
    (
        "mask_loss lengths",
        lambda: mask_loss(torch.randn(2, 3, 4, 4), torch.tensor([1]), torch.zeros(2, 4, 4)),
        ValueError,
        r"mismatched lengths",
    ),
]

# -- the functions a learner's own models enter through (train, diffusion, transfer, features) --
# fit / evaluate / predict check the first batch; the samplers, losses and measurements of
# diffusion and the transfer helpers check what they are given once per call.

Y = torch.tensor([0, 1])  # labels for GREY
DIGITS = torch.rand(2, 1, 16, 16, generator=g)  # what resnet_small (the judge) takes, in [0, 1]
X0 = torch.rand(2, 1, 8, 8, generator=g) * 2 - 1  # diffusion images in [-1, 1]
NOISE = torch.randn(2, 1, 8, 8, generator=g)
SCHEDULE = NoiseSchedule(10)


def own_classifier():
    """A learner's own model, with no guard of its own: 32x32 grey images -> 10 classes."""
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32, 10))


def run_fit(x=GREY, y=Y, loader=None, epochs=1):
    loader = [(x, y)] if loader is None else loader
    return fit(own_classifier(), loader, epochs=epochs, device="cpu", progress=False)


def run_evaluate(x=GREY, y=Y):
    return evaluate(own_classifier(), [(x, y)], device="cpu")


def run_predict(x, model=None):
    return predict(model or own_classifier(), x, device="cpu")


TRAIN_CASES = [
    ("fit label 10 of 10", lambda: run_fit(y=Y + 9), ValueError, r"0-based.*use y - 1"),
    ("fit label -1", lambda: run_fit(y=Y - 1), ValueError, r"labels in \[0, 9\]"),
    ("fit float labels", lambda: run_fit(y=Y.float()), TypeError, r"y.long\(\)"),
    ("fit uint8", lambda: run_fit(x=(GREY * 255).byte()), TypeError, r"x.float\(\) / 255"),
    ("fit 0-255", lambda: run_fit(x=GREY * 255), ValueError, r"use x / 255"),
    ("fit 28x28", lambda: run_fit(x=GREY[..., 2:-2, 2:-2]), ValueError, r"image size and chan"),
    ("fit RGB", lambda: run_fit(x=GREY.repeat(1, 3, 1, 1)), ValueError, r"\(2, 3, 32, 32\)"),
    ("fit numpy", lambda: run_fit(x=GREY.numpy(), y=Y.numpy()), TypeError, r"from_numpy"),
    ("fit list", lambda: run_fit(x=list(GREY)), TypeError, r"torch.as_tensor"),
    ("fit empty loader", lambda: run_fit(loader=[]), ValueError, r"empty loader"),
    ("fit empty batch", lambda: run_fit(x=GREY[:0], y=Y[:0]), ValueError, r"empty inputs"),
    ("fit lengths", lambda: run_fit(y=Y[:1]), ValueError, r"mismatched lengths: 2 inputs, 1"),
    ("fit NaN", lambda: run_fit(x=GREY * float("nan")), ValueError, r"NaN or infinite"),
    (
        "fit one-shot iterator",
        lambda: run_fit(loader=iter([(GREY, Y)]), epochs=2),
        TypeError,
        r"pass the DataLoader",
    ),
    ("evaluate label 10 of 10", lambda: run_evaluate(y=Y + 9), ValueError, r"use y - 1"),
    ("evaluate float labels", lambda: run_evaluate(y=Y.float()), TypeError, r"y.long\(\)"),
    ("evaluate uint8", lambda: run_evaluate(x=(GREY * 255).byte()), TypeError, r"/ 255"),
    ("evaluate 0-255", lambda: run_evaluate(x=GREY * 255), ValueError, r"use x / 255"),
    ("evaluate 28x28", lambda: run_evaluate(x=GREY[..., 2:-2, 2:-2]), ValueError, r"image size"),
    ("evaluate numpy", lambda: run_evaluate(x=GREY.numpy()), TypeError, r"torch.from_numpy"),
    ("evaluate empty", lambda: run_evaluate(GREY[:0], Y[:0]), ValueError, r"empty inputs"),
    ("evaluate lengths", lambda: run_evaluate(y=Y[:1]), ValueError, r"mismatched lengths"),
    ("evaluate NaN", lambda: run_evaluate(x=GREY * float("nan")), ValueError, r"NaN"),
    ("predict uint8", lambda: run_predict((GREY * 255).byte()), TypeError, r"x.float\(\) / 255"),
    ("predict 0-255", lambda: run_predict(GREY * 255), ValueError, r"use x / 255"),
    ("predict numpy", lambda: run_predict(GREY.numpy()), TypeError, r"torch.from_numpy"),
    ("predict empty", lambda: run_predict(GREY[:0]), ValueError, r"empty inputs"),
    ("predict empty loader", lambda: run_predict([]), ValueError, r"empty loader"),
    ("predict 28x28", lambda: run_predict(GREY[..., 2:-2, 2:-2]), ValueError, r"image size"),
    ("predict NaN", lambda: run_predict(GREY * float("nan")), ValueError, r"NaN"),
    ("predict RGB to LeNet5", lambda: run_predict(RGB, LeNet5()), ValueError, r"1-channel"),
]


def unet():
    return ConditionalUNet(1, 8, 10)


def ddpm(shape=(2, 1, 8, 8), labels=None, **kwargs):
    condition = Condition(labels) if labels is not None else None
    return sample_ddpm(unet(), SCHEDULE, shape, condition=condition, progress=False, **kwargs)


def ddim(shape=(2, 1, 8, 8), labels=None, num_steps=2):
    condition = Condition(labels) if labels is not None else None
    return sample_ddim(
        unet(), SCHEDULE, shape, num_steps=num_steps, condition=condition, progress=False
    )


def invert(x0=X0, labels=None):
    condition = Condition(labels) if labels is not None else None
    return ddim_invert(unet(), SCHEDULE, x0, num_steps=2, condition=condition, progress=False)


def flow(sampler, shape=(2, 1, 8, 8), labels=None, **kwargs):
    condition = Condition(labels) if labels is not None else None
    return sampler(unet(), shape, num_steps=2, condition=condition, progress=False, **kwargs)


def judge_accuracy(images=DIGITS, labels=(3, 7)):
    labels = torch.tensor(labels) if isinstance(labels, tuple) else labels
    return recognition_accuracy(resnet_small(), images, labels)


SAMPLER_CASES = [
    ("sample_ddpm float labels", lambda: ddpm(labels=Y.float()), TypeError, r"y.long\(\)"),
    ("sample_ddpm label 11", lambda: ddpm(labels=torch.tensor([1, 11])), ValueError, r"0, 9"),
    ("sample_ddpm labels list", lambda: ddpm(labels=[1, 2]), TypeError, r"torch.tensor\(y\)"),
    ("sample_ddpm labels numpy", lambda: ddpm(labels=Y.numpy()), TypeError, r"from_numpy"),
    ("sample_ddpm 3 labels for 2", lambda: ddpm(labels=torch.arange(3)), ValueError, r"3 labels"),
    ("sample_ddpm RGB shape", lambda: ddpm((2, 3, 8, 8)), ValueError, r"1-channel images, got 3"),
    ("sample_ddpm 10x10", lambda: ddpm((2, 1, 10, 10)), ValueError, r"divisible by 4"),
    ("sample_ddpm empty", lambda: ddpm((0, 1, 8, 8)), ValueError, r"empty"),
    ("sample_ddpm x_T numpy", lambda: ddpm(x_T=NOISE.numpy()), TypeError, r"x_T.*from_numpy"),
    ("sample_ddpm x_T NaN", lambda: ddpm(x_T=NOISE * float("nan")), ValueError, r"x_T.*NaN"),
    ("sample_ddpm x_T shape", lambda: ddpm(x_T=NOISE[:1]), ValueError, r"x_T must have shape"),
    (
        "sample_ddpm guidance, no null class",
        lambda: sample_ddpm(
            torch.nn.Conv2d(1, 1, 1),
            SCHEDULE,
            (2, 1, 8, 8),
            condition=Condition(Y, guidance_scale=3.0),
            progress=False,
        ),
        ValueError,
        r"null_class=",
    ),
    ("Condition scale, no labels", lambda: Condition(guidance_scale=3.0), ValueError, r"labels"),
    ("sample_ddim float labels", lambda: ddim(labels=Y.float()), TypeError, r"y.long\(\)"),
    ("sample_ddim 0 steps", lambda: ddim(num_steps=0), ValueError, r"num_steps must lie in"),
    ("sample_ddim steps > T", lambda: ddim(num_steps=11), ValueError, r"\[1, 10\]"),
    ("sample_ddim 10x10", lambda: ddim((2, 1, 10, 10)), ValueError, r"divisible by 4"),
    ("ddim_invert x0 in [0, 1]", lambda: invert((X0 + 1) / 2), ValueError, r"x \* 2 - 1"),
    ("ddim_invert 0-255", lambda: invert((X0 + 1) * 127.5), ValueError, r"must lie in \[-1, 1\]"),
    ("ddim_invert uint8", lambda: invert(((X0 + 1) * 127.5).byte()), TypeError, r"x.float\(\)"),
    ("ddim_invert numpy", lambda: invert(X0.numpy()), TypeError, r"torch.from_numpy"),
    ("ddim_invert NaN", lambda: invert(X0 * float("nan")), ValueError, r"NaN"),
    ("ddim_invert float labels", lambda: invert(labels=Y.float()), TypeError, r"y.long\(\)"),
    ("sample_euler float labels", lambda: flow(sample_euler, labels=Y.float()), TypeError, r"long"),
    ("sample_euler RGB shape", lambda: flow(sample_euler, (2, 3, 8, 8)), ValueError, r"1-channel"),
    (
        "sample_euler x_T numpy",
        lambda: flow(sample_euler, x_T=NOISE.numpy()),
        TypeError,
        r"torch.from_numpy",
    ),
    (
        "sample_euler 0 steps",
        lambda: sample_euler(unet(), (2, 1, 8, 8), num_steps=0, progress=False),
        ValueError,
        r"at least 1",
    ),
    (
        "sample_heun label 12",
        lambda: flow(sample_heun, labels=torch.tensor([1, 12])),
        ValueError,
        r"labels in \[0, 9\]",
    ),
    ("sample_heun 6x6", lambda: flow(sample_heun, (2, 1, 6, 6)), ValueError, r"divisible by 4"),
    (
        "sample_heun x_T list",
        lambda: flow(sample_heun, x_T=list(NOISE)),
        TypeError,
        r"Python list",
    ),
]

QUALITY_CASES = [
    (
        "recognition_accuracy label 10",
        lambda: judge_accuracy(labels=torch.tensor([3, 10])),
        ValueError,
        r"labels in \[0, 9\].*use y - 1",
    ),
    (
        "recognition_accuracy float labels",
        lambda: judge_accuracy(labels=torch.tensor([3.0, 7.0])),
        TypeError,
        r"y.long\(\)",
    ),
    (
        "recognition_accuracy uint8",
        lambda: judge_accuracy((DIGITS * 255).byte()),
        TypeError,
        r"x.float\(\) / 255",
    ),
    ("recognition_accuracy 0-255", lambda: judge_accuracy(DIGITS * 255), ValueError, r"x / 255"),
    (
        "recognition_accuracy samples in [-1, 1]",
        lambda: judge_accuracy(DIGITS * 2 - 1),
        ValueError,
        r"\(x \+ 1\) / 2",
    ),
    ("recognition_accuracy numpy", lambda: judge_accuracy(DIGITS.numpy()), TypeError, r"numpy"),
    (
        "recognition_accuracy labels list",
        lambda: judge_accuracy(labels=[3, 7]),
        TypeError,
        r"torch.tensor\(y\)",
    ),
    (
        "recognition_accuracy lengths",
        lambda: judge_accuracy(labels=torch.tensor([3])),
        ValueError,
        r"1 labels, expected 2",
    ),
    ("recognition_accuracy empty", lambda: judge_accuracy(DIGITS[:0]), ValueError, r"empty"),
    (
        "recognition_accuracy RGB",
        lambda: judge_accuracy(DIGITS.repeat(1, 3, 1, 1)),
        ValueError,
        r"1-channel images, got 3",
    ),
    (
        "recognition_accuracy NaN",
        lambda: judge_accuracy(DIGITS * float("nan")),
        ValueError,
        r"NaN",
    ),
    (
        "frechet_distance 1 sample",
        lambda: frechet_distance(torch.rand(1, 4), torch.rand(5, 4)),
        ValueError,
        r"at least 2 samples",
    ),
    (
        "frechet_distance empty",
        lambda: frechet_distance(torch.rand(0, 4), torch.rand(5, 4)),
        ValueError,
        r"at least 2 samples",
    ),
    (
        "frechet_distance numpy",
        lambda: frechet_distance(np.random.rand(5, 4), torch.rand(5, 4)),
        TypeError,
        r"torch.from_numpy",
    ),
    (
        "frechet_distance list",
        lambda: frechet_distance([[1.0, 2.0]] * 5, torch.rand(5, 2)),
        TypeError,
        r"torch.as_tensor",
    ),
    (
        "frechet_distance NaN",
        lambda: frechet_distance(torch.full((5, 4), float("nan")), torch.rand(5, 4)),
        ValueError,
        r"NaN",
    ),
    (
        "frechet_distance different D",
        lambda: frechet_distance(torch.rand(5, 4), torch.rand(5, 3)),
        ValueError,
        r"same D",
    ),
    (
        "frechet_distance images",
        lambda: frechet_distance(DIGITS, DIGITS),
        ValueError,
        r"features \[N, D\]",
    ),
    ("to01 uint8", lambda: to01((X0 * 127.5 + 127.5).byte()), TypeError, r"x.float\(\)"),
    ("to01 already [0, 1]", lambda: to01((X0 + 1) / 2), ValueError, r"looks like \[0, 1\]"),
    ("to01 numpy", lambda: to01(X0.numpy()), TypeError, r"torch.from_numpy"),
    ("to01 list", lambda: to01(list(X0)), TypeError, r"Python list"),
    ("to01 NaN", lambda: to01(X0 * float("nan")), ValueError, r"NaN"),
    ("to01 empty", lambda: to01(X0[:0]), ValueError, r"empty"),
]


def vae():
    return VAE(base=8)


VAE_CASES = [
    ("VAE.encode [0, 1]", lambda: vae().encode(DIGITS), ValueError, r"x \* 2 - 1"),
    ("VAE.encode uint8", lambda: vae().encode((DIGITS * 255).byte()), TypeError, r"/ 255"),
    ("VAE.encode 0-255", lambda: vae().encode(DIGITS * 255), ValueError, r"x / 127.5 - 1"),
    (
        "VAE.encode RGB",
        lambda: vae().encode(DIGITS.repeat(1, 3, 1, 1) * 2 - 1),
        ValueError,
        r"1-channel images, got 3",
    ),
    ("VAE.encode 14x14", lambda: vae().encode(DIGITS[..., 1:-1, 1:-1]), ValueError, r"by 4"),
    ("VAE.encode numpy", lambda: vae().encode(DIGITS.numpy()), TypeError, r"from_numpy"),
    ("VAE.encode empty", lambda: vae().encode(DIGITS[:0]), ValueError, r"empty"),
    ("VAE.encode NaN", lambda: vae().encode(DIGITS * float("nan")), ValueError, r"NaN"),
    (
        "VAE.decode 1-channel latent",
        lambda: vae().decode(torch.randn(2, 1, 4, 4)),
        ValueError,
        r"4-channel images, got 1",
    ),
    ("VAE.decode numpy", lambda: vae().decode(np.zeros((2, 4, 4, 4))), TypeError, r"from_numpy"),
    (
        "VAE.decode NaN",
        lambda: vae().decode(torch.full((2, 4, 4, 4), float("nan"))),
        ValueError,
        r"NaN",
    ),
    ("VAE.decode no batch", lambda: vae().decode(torch.randn(4, 4, 4)), ValueError, r"unsqueeze"),
    (
        "kl_divergence numpy",
        lambda: kl_divergence(np.zeros((2, 4)), torch.zeros(2, 4)),
        TypeError,
        r"torch.from_numpy",
    ),
    (
        "kl_divergence list",
        lambda: kl_divergence([0.0, 0.0], torch.zeros(2)),
        TypeError,
        r"torch.as_tensor",
    ),
    (
        "kl_divergence NaN",
        lambda: kl_divergence(torch.full((2, 4), float("nan")), torch.zeros(2, 4)),
        ValueError,
        r"NaN",
    ),
    (
        "kl_divergence shapes",
        lambda: kl_divergence(torch.zeros(2, 4), torch.zeros(2, 3)),
        ValueError,
        r"both halves of VAE.encode",
    ),
]


def dloss(x0=X0, y=None, model=None):
    return diffusion_loss(model or unet(), SCHEDULE, x0, y, p_uncond=0.0)  # no random drop


def fmloss(x1=X0, y=None):
    return flow_matching_loss(unet(), x1, y)


LOSS_CASES = [
    ("diffusion_loss x0 in [0, 1]", lambda: dloss((X0 + 1) / 2), ValueError, r"x \* 2 - 1"),
    ("diffusion_loss uint8", lambda: dloss((X0 * 127.5 + 127.5).byte()), TypeError, r"/ 255"),
    ("diffusion_loss numpy", lambda: dloss(X0.numpy()), TypeError, r"torch.from_numpy"),
    ("diffusion_loss list", lambda: dloss(list(X0)), TypeError, r"torch.as_tensor"),
    ("diffusion_loss NaN", lambda: dloss(X0 * float("nan")), ValueError, r"NaN"),
    ("diffusion_loss empty", lambda: dloss(X0[:0]), ValueError, r"empty"),
    ("diffusion_loss float labels", lambda: dloss(y=Y.float()), TypeError, r"y.long\(\)"),
    ("diffusion_loss label 11", lambda: dloss(y=torch.tensor([1, 11])), ValueError, r"0, 9"),
    ("diffusion_loss 3 labels", lambda: dloss(y=torch.arange(3)), ValueError, r"3 labels"),
    (
        "diffusion_loss RGB model",
        lambda: dloss(model=ConditionalUNet(3, 8, 10)),
        ValueError,
        r"3-channel images, got 1",
    ),
    ("flow_matching_loss [0, 1]", lambda: fmloss((X0 + 1) / 2), ValueError, r"x \* 2 - 1"),
    ("flow_matching_loss numpy", lambda: fmloss(X0.numpy()), TypeError, r"torch.from_numpy"),
    ("flow_matching_loss float labels", lambda: fmloss(y=Y.float()), TypeError, r"y.long"),
    ("fm_path x1 in [0, 1]", lambda: fm_path((X0 + 1) / 2, NOISE, Y * 0.5), ValueError, r"x \* 2"),
    (
        "fm_path integer steps",
        lambda: fm_path(X0, NOISE, torch.tensor([3, 500])),
        TypeError,
        r"integer diffusion steps\? use t / num_timesteps",
    ),
    (
        "fm_path t per image",
        lambda: fm_path(X0, NOISE, torch.rand(3)),
        ValueError,
        r"torch.full\(\(2,\), t\)",
    ),
    ("fm_path numpy", lambda: fm_path(X0.numpy(), NOISE, Y * 0.5), TypeError, r"from_numpy"),
    ("fm_path t numpy", lambda: fm_path(X0, NOISE, np.random.rand(2)), TypeError, r"from_numpy"),
    (
        "q_sample x0 in [0, 1]",
        lambda: q_sample(SCHEDULE, (X0 + 1) / 2, Y, NOISE),
        ValueError,
        r"x \* 2 - 1",
    ),
    (
        "q_sample flow time",
        lambda: q_sample(SCHEDULE, X0, torch.tensor([0.3, 0.7]), NOISE),
        ValueError,
        r"takes integer steps",
    ),
    (
        "q_sample 1-based steps",
        lambda: q_sample(SCHEDULE, X0, torch.tensor([3, 10]), NOISE),
        ValueError,
        r"use t - 1",
    ),
    (
        "q_sample numpy",
        lambda: q_sample(SCHEDULE, X0.numpy(), Y, NOISE.numpy()),
        TypeError,
        r"torch.from_numpy",
    ),
    ("q_sample t list", lambda: q_sample(SCHEDULE, X0, [1, 2], NOISE), TypeError, r"tensor\(t\)"),
    (
        "q_sample NaN",
        lambda: q_sample(SCHEDULE, X0 * float("nan"), Y, NOISE),
        ValueError,
        r"NaN",
    ),
    (
        "ConditionalUNet flow time",
        lambda: unet()(X0, torch.tensor([0.3, 0.7])),
        ValueError,
        r"a flow time\? this model takes integer steps",
    ),
    (
        "ConditionalUNet one int t",
        lambda: unet()(X0, 5),
        ValueError,
        r"torch.full\(\(2,\), t\)",
    ),
    (
        "ConditionalUNet 0-d t",
        lambda: unet()(X0, torch.tensor(5)),
        ValueError,
        r"torch.full\(\(2,\), t\)",
    ),
]


def tune(train, test=(DIGITS, Y), **kwargs):
    model = resnet_small()
    return fine_tune(
        model,
        resnet_blocks(model),
        train,
        test,
        **{"strategy": "full", "epochs": 1, "lr": 1e-3, "device": "cpu", "progress": False}
        | kwargs,
    )


def dann():
    return DANN(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32, 4)), 4, 10)


def adapt(source=(GREY, Y), target=GREY):
    return adapt_domain(
        dann(),
        source,
        target,
        (GREY, Y),
        method="none",
        epochs=1,
        lr=1e-3,
        batch_size=2,
        device="cpu",
        progress=False,
    )


TRANSFER_CASES = [
    (
        "replace_head 0 classes",
        lambda: replace_head(resnet_small(), 0),
        ValueError,
        r"num_classes >= 1",
    ),
    ("DANN 0 classes", lambda: DANN(torch.nn.Flatten(), 4, 0), ValueError, r"must be positive"),
    ("warmup_cosine warm-up > total", lambda: warmup_cosine(0, 10, 20), ValueError, r"fit in"),
    ("warmup_cosine total 0", lambda: warmup_cosine(0, 0), ValueError, r"positive number"),
    ("warmup_cosine step -1", lambda: warmup_cosine(-1, 10), ValueError, r"counts from 0"),
    ("one_cycle total 0", lambda: one_cycle(0, 0), ValueError, r"positive number of steps"),
    ("one_cycle pct_start 1", lambda: one_cycle(0, 10, pct_start=1.0), ValueError, r"\(0, 1\)"),
    ("fine_tune warm-up share 2", lambda: tune((DIGITS, Y), warmup=2), ValueError, r"\[0, 1\]"),
    ("fine_tune float labels", lambda: tune((DIGITS, Y.float())), TypeError, r"y.long\(\)"),
    ("fine_tune lengths", lambda: tune((DIGITS, Y[:1])), ValueError, r"1 labels, expected 2"),
    ("fine_tune label 10", lambda: tune((DIGITS, Y + 9)), ValueError, r"use y - 1"),
    ("fine_tune numpy", lambda: tune((DIGITS.numpy(), Y)), TypeError, r"torch.from_numpy"),
    (
        "fine_tune uint8 test",
        lambda: tune((DIGITS, Y), ((DIGITS * 255).byte(), Y)),
        TypeError,
        r"/ 255",
    ),
    ("fine_tune not a pair", lambda: tune(DIGITS), ValueError, r"expected a pair"),
    ("accuracy label 10", lambda: accuracy(LeNet5(), GREY, Y + 9), ValueError, r"use y - 1"),
    ("accuracy float labels", lambda: accuracy(LeNet5(), GREY, Y.float()), TypeError, r"long"),
    ("accuracy numpy", lambda: accuracy(LeNet5(), GREY.numpy(), Y), TypeError, r"from_numpy"),
    ("accuracy list", lambda: accuracy(LeNet5(), list(GREY), Y), TypeError, r"torch.stack"),
    ("accuracy empty", lambda: accuracy(LeNet5(), GREY[:0], Y[:0]), ValueError, r"empty"),
    ("accuracy lengths", lambda: accuracy(LeNet5(), GREY, Y[:1]), ValueError, r"1 labels"),
    ("accuracy uint8", lambda: accuracy(LeNet5(), (GREY * 255).byte(), Y), TypeError, r"/ 255"),
    ("accuracy 0-255", lambda: accuracy(LeNet5(), GREY * 255, Y), ValueError, r"use x / 255"),
    (
        "accuracy 28x28 to own model",
        lambda: accuracy(own_classifier(), GREY[..., 2:-2, 2:-2], Y),
        ValueError,
        r"cannot take inputs of shape \(2, 1, 28, 28\)",
    ),
    ("adapt_domain label 10", lambda: adapt((GREY, Y + 9)), ValueError, r"use y - 1"),
    ("adapt_domain float labels", lambda: adapt((GREY, Y.float())), TypeError, r"y.long\(\)"),
    ("adapt_domain target numpy", lambda: adapt(target=GREY.numpy()), TypeError, r"from_numpy"),
    ("adapt_domain lengths", lambda: adapt((GREY, Y[:1])), ValueError, r"1 labels, expected 2"),
    (
        "adapt_batch_norm uint8",
        lambda: adapt_batch_norm(resnet_small(), (DIGITS * 255).byte()),
        TypeError,
        r"/ 255",
    ),
    (
        "adapt_batch_norm numpy",
        lambda: adapt_batch_norm(resnet_small(), DIGITS.numpy()),
        TypeError,
        r"from_numpy",
    ),
    (
        "adapt_batch_norm empty",
        lambda: adapt_batch_norm(resnet_small(), DIGITS[:0]),
        ValueError,
        r"empty",
    ),
    (
        "mmd_loss numpy",
        lambda: mmd_loss(np.zeros((2, 3)), torch.zeros(2, 3)),
        TypeError,
        r"from_numpy",
    ),
    (
        "mmd_loss NaN",
        lambda: mmd_loss(torch.full((2, 3), float("nan")), torch.zeros(2, 3)),
        ValueError,
        r"NaN",
    ),
    (
        "mmd_loss empty",
        lambda: mmd_loss(torch.zeros(0, 3), torch.zeros(2, 3)),
        ValueError,
        r"non-empty",
    ),
    (
        "mmd_loss different D",
        lambda: mmd_loss(torch.zeros(2, 3), torch.zeros(2, 4)),
        ValueError,
        r"same D",
    ),
    ("augmentation size 0", lambda: augmentation("minimal", 0), ValueError, r"positive int"),
]

PROBS = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])

FEATURES_CASES = [
    (
        "extract_features uint8",
        lambda: extract_features(resnet_small(), (DIGITS * 255).byte(), device="cpu"),
        TypeError,
        r"x.float\(\) / 255",
    ),
    (
        "extract_features numpy",
        lambda: extract_features(resnet_small(), DIGITS.numpy(), device="cpu"),
        TypeError,
        r"torch.from_numpy",
    ),
    (
        "extract_features list",
        lambda: extract_features(resnet_small(), list(DIGITS), device="cpu"),
        TypeError,
        r"torch.stack",
    ),
    (
        "extract_features empty",
        lambda: extract_features(resnet_small(), DIGITS[:0], device="cpu"),
        ValueError,
        r"empty",
    ),
    (
        "extract_features RGB",
        lambda: extract_features(resnet_small(), DIGITS.repeat(1, 3, 1, 1), device="cpu"),
        ValueError,
        r"1-channel images, got 3",
    ),
    (
        "extract_features NaN",
        lambda: extract_features(resnet_small(), DIGITS * float("nan"), device="cpu"),
        ValueError,
        r"NaN",
    ),
    (
        "calibration float labels",
        lambda: expected_calibration_error(PROBS, torch.tensor([0.0, 1.0])),
        TypeError,
        r"integer class labels, got torch.float32: use y.long\(\)",
    ),
    (
        "calibration label 3 of 3",
        lambda: expected_calibration_error(PROBS, torch.tensor([0, 3])),
        ValueError,
        r"labels in \[0, 2\], got values in \[0, 3\]",
    ),
    (
        "calibration lengths",
        lambda: expected_calibration_error(PROBS, torch.tensor([0])),
        ValueError,
        r"mismatched lengths",
    ),
    (
        "calibration logits",
        lambda: expected_calibration_error(PROBS.log(), torch.tensor([0, 1])),
        ValueError,
        r"softmax",
    ),
    (
        "calibration empty",
        lambda: expected_calibration_error(PROBS[:0], torch.tensor([], dtype=torch.long)),
        ValueError,
        r"N > 0",
    ),
    (
        "reliability_diagram label 3 of 3",
        lambda: reliability_diagram(PROBS, torch.tensor([0, 3])),
        ValueError,
        r"labels in \[0, 2\], got values in \[0, 3\]",
    ),
    (
        "cluster_scores lengths",
        lambda: cluster_scores([0, 1, 2], [0, 1]),
        ValueError,
        r"mismatched lengths",
    ),
    ("cluster_scores empty", lambda: cluster_scores([], []), ValueError, r"empty inputs"),
    (
        "compare_classifiers lengths",
        lambda: compare_classifiers({"a": torch.rand(10, 3)}, torch.arange(9) % 2),
        ValueError,
        r"mismatched lengths: 10 features, 9 labels",
    ),
    (
        "plot_neighbours lengths",
        lambda: plot_neighbours(DIGITS, 0, [1, 0], [0.5]),
        ValueError,
        r"mismatched lengths",
    ),
    ("cosine NaN", lambda: cosine_similarity_matrix(FEATS_NAN), ValueError, r"NaN or infinite"),
    (
        "cosine one vector",
        lambda: cosine_similarity_matrix(torch.rand(3)),
        ValueError,
        r"unsqueeze",
    ),
    ("neighbours NaN", lambda: nearest_neighbours(FEATS_NAN, 0), ValueError, r"NaN or infinite"),
    ("topk NaN", lambda: topk_predictions(FEATS_NAN, k=2), ValueError, r"NaN or infinite"),
    ("topk numpy", lambda: topk_predictions(np.ones((2, 3))), TypeError, r"torch.from_numpy"),
    (
        "calibration NaN",
        lambda: expected_calibration_error(PROBS * float("nan"), torch.tensor([0, 1])),
        ValueError,
        r"NaN or infinite",
    ),
    (
        "compare_classifiers float labels",
        lambda: compare_classifiers({"a": torch.rand(10, 3)}, torch.rand(10)),
        TypeError,
        r"integer class labels",
    ),
    ("cluster_features NaN", lambda: cluster_features(FEATS_NAN, 2), ValueError, r"NaN"),
]

CASES = (
    IMAGE_CASES
    + MODEL_CASES
    + DETECTION_CASES
    + SEGMENTATION_CASES
    + TRAIN_CASES
    + SAMPLER_CASES
    + QUALITY_CASES
    + VAE_CASES
    + LOSS_CASES
    + TRANSFER_CASES
    + FEATURES_CASES
)


@pytest.mark.parametrize(
    ("call", "error", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_gets_a_clear_error_naming_the_fix(call, error, fragment):
    with pytest.raises(error, match=fragment):
        call()


def test_the_table_is_large_and_has_no_duplicate_ids():
    ids = [c[0] for c in CASES]
    assert len(set(ids)) == len(ids) >= 240


def test_good_input_passes_the_same_guards():
    assert image.rgb_to_gray(RGB).shape == (2, 1, 16, 16)
    assert LeNet5()(GREY).shape == (2, 10)
    with torch.no_grad():
        assert len(CenterNet().eval()(SCENES)) == 2
        assert segment(UNet(3, 2, base=4, depth=2), RGB).shape == (2, 16, 16)
    assert mean_average_precision([pred()], [target()])["map"] == pytest.approx(1.0)
    assert np.isfinite(
        mask_loss(torch.randn(2, 3, 4, 4), torch.tensor([1, 3]), torch.zeros(2, 4, 4)).item()
    )


def test_frechet_distance_warns_with_fewer_samples_than_dimensions():
    """Allowed (a small experiment), but the covariance is singular and the distance biased."""
    with pytest.warns(UserWarning, match=r"fewer samples than dimensions .* biased"):
        distance = frechet_distance(torch.rand(3, 8, generator=g), torch.rand(3, 8, generator=g))
    assert np.isfinite(distance)


def test_good_input_passes_the_learner_facing_guards():
    history = run_fit()
    assert len(history.train_loss) == 1 and np.isfinite(history.train_loss[0])
    assert set(run_evaluate()) == {"loss", "accuracy"}
    assert run_predict(GREY).shape == (2, 10)
    assert ddpm(labels=Y).shape == (2, 1, 8, 8)
    assert invert().shape == X0.shape
    assert flow(sample_euler, labels=Y).shape == (2, 1, 8, 8)
    torch.testing.assert_close(to01(X0), (X0 + 1) / 2)
    assert 0.0 <= judge_accuracy() <= 1.0
    assert q_sample(SCHEDULE, X0, Y, NOISE).shape == X0.shape
    torch.testing.assert_close(
        fm_path(X0, NOISE, torch.tensor([0.0, 1.0])), torch.stack([NOISE[0], X0[1]])
    )
    assert np.isfinite(dloss(y=Y).item()) and np.isfinite(fmloss(y=Y).item())
    assert 0.0 <= accuracy(LeNet5(), GREY, Y) <= 1.0
    assert mmd_loss(torch.zeros(2, 3), torch.zeros(2, 3)).item() == pytest.approx(0.0)
