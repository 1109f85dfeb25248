"""The checkpoint zoo: models that take minutes to train, trained once and shipped with the course.

A lesson that needs a trained detector calls ``zoo.load(name)`` and gets it, ready to use, in
seconds; ``make checkpoints`` (``python -m course_utils.zoo``) retrains every entry from the code
registered at the bottom of this file, with fixed seeds, so anyone can check where the shipped
weights come from.

On disk (``data/checkpoints/``), per entry: ``NAME.safetensors`` (the state dict; safetensors
holds only tensors, so unlike a pickled ``torch.save`` file it cannot run code when loaded) and
one record in ``manifest.json``: sha256, parameter count, dtype, training recipe, metric reached
and the torch version. :func:`load` refuses a file whose sha256 does not match the manifest.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from .runtime import device as default_device
from .runtime import seed_everything

__all__ = [
    "CHECKPOINT_DIR",
    "CheckpointError",
    "Entry",
    "REGISTRY",
    "register",
    "load",
    "info",
    "train_checkpoint",
    "status",
]

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "data" / "checkpoints"
MANIFEST = "manifest.json"
_DTYPES = {"float16": torch.float16, "float32": torch.float32}


class CheckpointError(RuntimeError):
    """A checkpoint file or its manifest record is missing or does not match."""


@dataclass(frozen=True)
class Entry:
    """How to rebuild one checkpoint from scratch.

    ``build()`` returns the untrained architecture; ``train(model)`` trains it in place,
    deterministically (it fixes its own seeds), and returns ``{"metric": name, "value": float}``;
    ``recipe`` (JSON-serialisable) describes the training for humans and goes into the manifest.
    ``dtype="float16"`` halves the file; use ``"float32"`` where that costs quality.
    """

    name: str
    build: Callable[[], nn.Module]
    train: Callable[[nn.Module], dict]
    recipe: dict
    dtype: str = "float16"
    description: str = ""


REGISTRY: dict[str, Entry] = {}


def register(entry: Entry) -> Entry:
    """Add ``entry`` to :data:`REGISTRY` (its name becomes the file name) and return it."""
    if not re.fullmatch(r"[a-z0-9_]+", entry.name):
        raise ValueError(f"checkpoint names are lower_snake_case file names, got {entry.name!r}")
    if entry.name in REGISTRY:
        raise ValueError(f"a checkpoint named {entry.name!r} is already registered")
    if entry.dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {entry.dtype!r}")
    REGISTRY[entry.name] = entry
    return entry


def _entry(name: str) -> Entry:
    if name not in REGISTRY:
        raise KeyError(f"no checkpoint named {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (what a learner sees in the file tree)."""
    try:
        return str(path.resolve().relative_to(CHECKPOINT_DIR.parent.parent))
    except ValueError:
        return str(path)


def _read_manifest(root: Path) -> dict:
    path = Path(root) / MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(
            f"{_shown(path)} is not valid JSON ({err}); `git checkout` it or run `make checkpoints`"
        ) from None


def info(name: str, *, root: Path = CHECKPOINT_DIR) -> dict:
    """The manifest record of checkpoint ``name``: file, sha256, params, dtype, recipe, metric, ..."""
    _entry(name)
    path = Path(root) / MANIFEST
    record = _read_manifest(root).get(name)
    if record is None:
        problem = f"has no record for {name!r}" if path.exists() else "is missing"
        raise CheckpointError(f"{_shown(path)} {problem}; run `make checkpoints NAMES={name}`")
    return record


def _verified_bytes(name: str, root: Path) -> bytes:
    """The checkpoint file's bytes, after checking them against the manifest's sha256."""
    record = info(name, root=root)
    path = Path(root) / record["file"]
    if not path.exists():
        raise CheckpointError(
            f"{_shown(path)} is missing; run `make checkpoints NAMES={name}` or `git checkout` it"
        )
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != record["sha256"]:  # a truncated download, a git-lfs pointer, an edited file...
        raise CheckpointError(
            f"{_shown(path)} is corrupted: sha256 {digest} != manifest {record['sha256']}; "
            f"run `make checkpoints NAMES={name}` or `git checkout` it"
        )
    return data


def load(
    name: str, *, root: Path = CHECKPOINT_DIR, device: torch.device | str | None = None
) -> nn.Module:
    """The trained model ``name``: hash verified, weights loaded (as float32), in ``eval()`` mode,
    on ``device`` (default ``course_utils.device()``).

    Raises ``KeyError`` for an unknown name and :class:`CheckpointError` for a missing or corrupted
    file (with the command that fixes it).
    """
    state = load_safetensors(_verified_bytes(name, root))
    # float16 on disk saves space; compute in float32 (int buffers stay as they are)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model = _entry(name).build()
    model.load_state_dict(state, strict=True)  # strict: every weight must match the architecture
    return model.eval().to(device if device is not None else default_device())


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file and rename it: a crash never leaves half a file behind."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # atomic on the same file system


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block on one CPU thread, then restore the thread count.

    A sum split over several threads adds its terms in another order, so trained weights would
    depend on the machine's core count; on one thread they are the same bytes on every CPU.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_checkpoint(name: str, *, root: Path = CHECKPOINT_DIR) -> dict:
    """Train entry ``name`` from scratch, save ``NAME.safetensors`` and its manifest record.

    Same code, same seed, one CPU thread -> the same bytes on any CPU, so the sha256 in the
    manifest documents exactly which weights were shipped. Returns the manifest record.
    """
    entry = _entry(name)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    seed_everything(0)  # the untrained weights are part of the recipe too
    model = entry.build()
    with one_thread():
        result = entry.train(model)

    dtype = _DTYPES[entry.dtype]
    state = {}
    for key, tensor in model.state_dict().items():
        cast = dtype if tensor.is_floating_point() else tensor.dtype  # int buffers stay ints
        # copy=True: tied weights would otherwise share memory, which safetensors refuses
        tensor = tensor.detach().to(device="cpu", dtype=cast, copy=True)
        if not torch.isfinite(tensor).all():  # NaN from training, or a weight > 65504 in float16
            raise ValueError(f"{name}: {key} is not finite as {entry.dtype}; use dtype='float32'?")
        state[key] = tensor.contiguous()
    data = save_safetensors(state, metadata={"format": "pt"})

    record = {
        "file": f"{name}.safetensors",
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "params": sum(p.numel() for p in model.parameters()),
        "dtype": entry.dtype,
        "recipe": entry.recipe,
        "metric": {"name": result["metric"], "value": float(result["value"])},
        "torch": torch.__version__,
    }
    others = {k: float(v) for k, v in result.items() if k not in ("metric", "value")}
    if others:  # secondary scores, e.g. the detector's 0.5:0.95 mAP next to its mAP@0.5
        record["scores"] = others
    _write_atomically(root / record["file"], data)
    manifest = _read_manifest(root) | {name: record}
    _write_atomically(
        root / MANIFEST, (json.dumps(manifest, sort_keys=True, indent=2) + "\n").encode()
    )
    return record


def status(name: str, *, root: Path = CHECKPOINT_DIR) -> str:
    """One line about checkpoint ``name``: the metric reached, parameters and file size, or
    ``NOT READY (...)`` with what is wrong and the command that fixes it. Never raises for a
    registered name, so a list of all checkpoints survives one that is missing."""
    try:
        _verified_bytes(name, root)
    except CheckpointError as err:
        return f"NOT READY ({err})"
    record = info(name, root=root)
    metric = f"{record['metric']['name']}={record['metric']['value']:.4f}"
    return f"{metric}, {record['params']:,} params, {record['bytes'] / 1e6:.2f} MB"


def main(argv: list[str] | None = None) -> None:
    """``python -m course_utils.zoo [--root DIR] [--list] [NAME ...]`` (``make checkpoints``)."""
    parser = argparse.ArgumentParser(
        prog="python -m course_utils.zoo",
        description="Train the course's checkpoints and record them in manifest.json.",
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help="entries to retrain (default: all)"
    )
    parser.add_argument("--root", type=Path, default=CHECKPOINT_DIR, help="checkpoint folder")
    parser.add_argument("--list", action="store_true", help="show the entries and their state")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in REGISTRY]
    if unknown:
        parser.error(
            f"unknown checkpoint(s) {', '.join(unknown)}; registered: {', '.join(sorted(REGISTRY))}"
        )
    names = args.names or sorted(REGISTRY)
    if not names:
        print("no checkpoints are registered")
    for name in names:
        if args.list:
            print(f"{name}: {REGISTRY[name].description} -- {status(name, root=args.root)}")
        else:
            record = train_checkpoint(name, root=args.root)
            print(f"{name}: {status(name, root=args.root)} -> {_shown(args.root / record['file'])}")


# Registered checkpoints
# ----------------------
# Each lesson that ships a trained model adds its `register(Entry(...))` call here, so that
# `make checkpoints` (which runs this module) knows every checkpoint. Entries import the lesson
# modules inside their functions: importing the zoo stays cheap and free of import cycles.


def train_digits_classifier(
    model: nn.Module,
    *,
    size: int,
    epochs: int,
    lr: float,
    batch_size: int = 64,
    cosine: bool = False,
    device: torch.device | str = "cpu",
    progress: bool = False,
    max_steps_per_epoch: int | None = None,
) -> dict:
    """Train a classifier on the fixed digits split (``data.digits_split``, seed 0).

    Returns the held-out test accuracy, the number every digits lesson compares against, and the
    :class:`~course_utils.train.History` (test loss and accuracy after every epoch, for curves;
    they are only looked at, never used to pick anything). The zoo trains on the CPU (byte-identical
    weights); a lesson reuses the very same recipe with ``device``, ``progress`` and, in FAST mode,
    ``max_steps_per_epoch``. ``cosine=True`` lowers the learning rate from ``lr`` to 0 along a
    cosine over all steps: the last epochs fine-tune instead of jumping around, so the final
    weights (the ones shipped) are good ones.
    """
    from torch.utils.data import DataLoader, TensorDataset

    from . import data
    from .train import evaluate, fit

    x_train, x_test, y_train, y_test = data.digits_split(size=size)
    shuffle = torch.Generator().manual_seed(0)  # same batches every run: byte-identical weights
    train = DataLoader(TensorDataset(x_train, y_train), batch_size, shuffle=True, generator=shuffle)
    test = DataLoader(TensorDataset(x_test, y_test), batch_size=256)
    optimizer = scheduler = None  # fit's default: AdamW at a constant lr
    if cosine:
        model.to(device)  # the optimizer must hold the parameters where they will be trained
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        steps = epochs * min(len(train), max_steps_per_epoch or len(train))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    history = fit(
        model,
        train,
        test,
        epochs=epochs,
        lr=lr,
        optimizer=optimizer,
        scheduler=scheduler,
        device=device,
        progress=progress,
        max_steps_per_epoch=max_steps_per_epoch,
    )
    accuracy = evaluate(model, test, device=device)["accuracy"]
    return {"metric": "test_accuracy", "value": accuracy, "history": history}


def register_digits_classifier(
    name: str, build: Callable[[], nn.Module], description: str, **recipe
):
    """Register a digits classifier trained by :func:`train_digits_classifier` with ``recipe``."""
    register(
        Entry(
            name=name,
            build=build,
            train=functools.partial(train_digits_classifier, **recipe),
            recipe={"data": "digits_split(seed=0): 1,347 train / 450 test", "optimizer": "AdamW"}
            | recipe,
            description=description,
        )
    )


def _lenet5() -> nn.Module:
    from .models import LeNet5

    return LeNet5(num_classes=10, in_channels=1)


register_digits_classifier(
    "lenet5_digits",
    _lenet5,
    "LeNet-5 on the embedded digits resized to 32x32 (lessons 00 and 02)",
    size=32,
    epochs=40,
    lr=3e-3,
)


def _minivgg() -> nn.Module:
    from .models import MiniVGG

    return MiniVGG(num_classes=10, in_channels=1, widths=(32, 64, 128))  # 3 VGG blocks + GAP


def _resnet_small() -> nn.Module:
    from .models import resnet_small

    return resnet_small(num_classes=10, in_channels=1)


register_digits_classifier(
    "minivgg_digits",
    _minivgg,
    "MiniVGG (3 VGG blocks, global average pooling) on the digits resized to 16x16 (lesson 02)",
    size=16,
    epochs=30,
    lr=3e-3,
    cosine=True,
)
register_digits_classifier(
    "resnet_small_digits",
    _resnet_small,
    "A small ResNet (3 stages of one basic block) on the digits resized to 16x16 (lesson 02)",
    size=16,
    epochs=30,
    lr=3e-3,
    cosine=True,
)


def train_detector_digits(
    model: nn.Module,
    *,
    scenes: dict,
    train_scenes: int,
    test_scenes: int,
    epochs: int,
    lr: float,
    batch_size: int,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict:
    """Train a detector on ``train_scenes`` digit scenes (``DigitScenes(**scenes)``) and measure
    its COCO mAP on ``test_scenes`` held-out scenes, whose handwriting it has never seen.

    Returns ``{"metric": "map_50", "value": ..., "map": ...}`` (``map``: the 0.5:0.95 average).
    Lesson 03 calls it with ``progress=True`` to retrain the shipped detector in front of you.
    """
    from .detection.detector import digit_scenes, evaluate_detector, train_detector

    train = digit_scenes(train_scenes, "train", **scenes)
    train_detector(
        model, train, epochs=epochs, lr=lr, batch_size=batch_size, device=device,
        progress=progress,
    )  # fmt: skip
    scores = evaluate_detector(model, digit_scenes(test_scenes, "test", **scenes))
    return {"metric": "map_50", "value": scores["map_50"], "map": scores["map"]}


def _centernet_digits() -> nn.Module:
    from .detection.centernet import CenterNet

    return CenterNet(num_classes=10)


_DETECTOR_RECIPE = {
    "scenes": {"image_size": 96, "digit_size": [16, 32], "max_digits": 4, "seed": 0},
    "train_scenes": 1600,
    "test_scenes": 200,
    "epochs": 20,
    "lr": 3e-3,
    "batch_size": 32,
}
register(
    Entry(
        name="detector_digits",
        build=_centernet_digits,
        train=functools.partial(train_detector_digits, **_DETECTOR_RECIPE),
        recipe={
            "model": "CenterNet(num_classes=10): PyramidBackbone + CenterNetHead, stride 4",
            "optimizer": "AdamW(weight_decay=1e-4), OneCycleLR(pct_start=0.15), grad_clip=10",
            "threads": 1,
        }
        | _DETECTOR_RECIPE,
        description="CenterNet detector of the 10 digits in 96x96 digit scenes (lesson 03)",
    )
)


def train_segmenter_digits(
    model: nn.Module,
    *,
    scenes: dict,
    train_scenes: int,
    test_scenes: int,
    epochs: int,
    lr: float,
    batch_size: int,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict:
    """Train a semantic segmenter (11 classes: background + 10 digits) on ``train_scenes`` digit
    scenes and measure it on ``test_scenes`` held-out scenes.

    Returns ``{"metric": "miou", "value": ..., "foreground_iou": ..., "pixel_accuracy": ...}``.
    """
    from .segmentation import evaluate_segmenter, scene_masks, train_segmenter

    train_segmenter(
        model, scene_masks(train_scenes, "train", **scenes), epochs=epochs, lr=lr,
        batch_size=batch_size, device=device, progress=progress,
    )  # fmt: skip
    scores = evaluate_segmenter(model, scene_masks(test_scenes, "test", **scenes), num_classes=11)
    return {
        "metric": "miou",
        "value": scores["miou"],
        "foreground_iou": scores["foreground_iou"],
        "pixel_accuracy": scores["pixel_accuracy"],
    }


def _unet_digits() -> nn.Module:
    from .segmentation import UNet

    return UNet(in_channels=3, num_classes=11, base=16, depth=3)


#: The scenes of lesson 03's detector, so that lesson 04 can fuse both models' outputs.
_SEGMENTER_RECIPE = {
    "scenes": _DETECTOR_RECIPE["scenes"],
    "train_scenes": 2000,
    "test_scenes": 200,
    "epochs": 20,
    "lr": 3e-3,
    "batch_size": 32,
}
register(
    Entry(
        name="unet_digit_scenes",
        build=_unet_digits,
        train=functools.partial(train_segmenter_digits, **_SEGMENTER_RECIPE),
        recipe={
            "model": "UNet(in_channels=3, num_classes=11, base=16, depth=3, bilinear=True)",
            "loss": "CombinedSegmentationLoss (cross-entropy + dice)",
            "optimizer": "AdamW(weight_decay=1e-4), OneCycleLR(pct_start=0.2)",
            "threads": 1,
        }
        | _SEGMENTER_RECIPE,
        description="U-Net semantic segmenter of 96x96 digit scenes, 11 classes (lesson 04)",
    )
)


def train_instance_digits(
    model: nn.Module,
    *,
    scenes: dict,
    train_scenes: int,
    test_scenes: int,
    epochs: int,
    lr: float,
    batch_size: int,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict:
    """Give an :class:`~course_utils.segmentation.InstanceSegmenter` the shipped detector
    (``detector_digits``), train its mask head on ``train_scenes`` scenes and measure mask mAP
    (COCO's ``segm``) on ``test_scenes`` held-out scenes.

    Returns ``{"metric": "mask_map_50", "value": ..., "mask_map": ..., "box_map_50": ...}``.
    """
    from .detection.detector import detect, digit_scenes, train_detector
    from .detection.metrics import mean_average_precision

    model.detector.load_state_dict(load("detector_digits").state_dict())
    keys = ("boxes", "labels", "masks")
    train = digit_scenes(train_scenes, "train", keys=keys, **scenes)
    train_detector(
        model, train, epochs=epochs, lr=lr, batch_size=batch_size, device=device,
        progress=progress,
    )  # fmt: skip
    preds, targets = detect(model, digit_scenes(test_scenes, "test", keys=keys, **scenes))
    masks = mean_average_precision(preds, targets, iou_type="segm")
    boxes = mean_average_precision(preds, targets, iou_type="bbox")
    return {
        "metric": "mask_map_50",
        "value": masks["map_50"],
        "mask_map": masks["map"],
        "box_map_50": boxes["map_50"],
    }


def _instance_digits() -> nn.Module:
    from .segmentation import InstanceSegmenter

    return InstanceSegmenter(_centernet_digits())


_INSTANCE_RECIPE = {
    "scenes": _DETECTOR_RECIPE["scenes"],
    "train_scenes": 1600,
    "test_scenes": 200,
    "epochs": 12,
    "lr": 3e-3,
    "batch_size": 32,
}
register(
    Entry(
        name="instance_digit_scenes",
        build=_instance_digits,
        train=functools.partial(train_instance_digits, **_INSTANCE_RECIPE),
        recipe={
            "model": "InstanceSegmenter(CenterNet(num_classes=10), hidden=64, num_convs=4, "
            "roi_size=14): detector_digits (frozen) + MaskHead on its stride-4 features",
            "optimizer": "AdamW(weight_decay=1e-4), OneCycleLR(pct_start=0.15), grad_clip=10",
            "threads": 1,
        }
        | _INSTANCE_RECIPE,
        description="detector_digits + a Mask R-CNN mask head: digit instance masks (lesson 04)",
    )
)


def train_source_digits(
    model: nn.Module,
    *,
    images: dict,
    train_images: int,
    test_images: int,
    epochs: int,
    lr: float,
    batch_size: int,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict:
    """Pretrain the source model of lesson 05: ``train_images`` coloured digits on plain
    backgrounds (``data.coloured_digits(**images)``), scored on ``test_images`` held-out ones.

    Returns ``{"metric": "accuracy", "value": ...}`` (source-domain test accuracy).
    """
    from .data import coloured_digits
    from .transfer import fine_tune, resnet_blocks

    train = coloured_digits(train_images, "train", **images)
    test = coloured_digits(test_images, "test", **images)
    result = fine_tune(
        model, resnet_blocks(model), train, test, strategy="full", epochs=epochs, lr=lr,
        decay=1.0, batch_size=batch_size, device=device, progress=progress,
    )  # fmt: skip
    return {"metric": "accuracy", "value": result["accuracy"]}


def _resnet_source() -> nn.Module:
    from .models import resnet_small

    return resnet_small(num_classes=10, in_channels=3)


_SOURCE_RECIPE = {
    "images": {"size": 32, "background": "plain", "seed": 0},
    "train_images": 4000,
    "test_images": 500,
    "epochs": 8,
    "lr": 3e-3,
    "batch_size": 32,
}
register(
    Entry(
        name="resnet_source_digits",
        build=_resnet_source,
        train=functools.partial(train_source_digits, **_SOURCE_RECIPE),
        recipe={
            "model": "resnet_small(num_classes=10, in_channels=3), widths (16, 32, 64)",
            "optimizer": "AdamW(weight_decay=1e-4), warm-up 10 % + cosine (transfer.fine_tune)",
            "threads": 1,
        }
        | _SOURCE_RECIPE,
        description="Source model for transfer learning: coloured digits on plain backgrounds (lesson 05)",
    )
)


def train_autoencoder_digits(
    model: nn.Module,
    *,
    size: int,
    epochs: int,
    lr: float,
    batch_size: int,
    beta: float,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict:
    """Train the VAE of latent diffusion (lesson 09) on the training digits; score its
    reconstructions (from the latent means) of the 450 test digits: how often the judge
    ``resnet_small_digits`` still recognises them, and their mean squared error in [0, 1]."""
    from . import data
    from .latent import train_vae
    from .quality import recognition_accuracy

    x_train, x_test, _, y_test = data.digits_split(size=size)
    train_vae(
        model, x_train, epochs=epochs, lr=lr, batch_size=batch_size, beta=beta, device=device,
        progress=progress,
    )  # fmt: skip
    model.eval()
    with torch.no_grad():
        mean, _ = model.encode(x_test.to(device) * 2 - 1)
        recon = ((model.decode(mean).cpu() + 1) / 2).clamp(0, 1)
    judge = load("resnet_small_digits", device=device)
    return {
        "metric": "recognised_reconstructions",
        "value": recognition_accuracy(judge, recon, y_test),
        "mse": ((recon - x_test) ** 2).mean().item(),
    }


def _autoencoder_digits() -> nn.Module:
    from .latent import VAE

    return VAE(in_channels=1, latent_channels=4, base=32, downsamples=2)


_AUTOENCODER_RECIPE = {"size": 16, "epochs": 60, "lr": 1e-3, "batch_size": 128, "beta": 1e-3}
register(
    Entry(
        name="autoencoder_digits",
        build=_autoencoder_digits,
        train=functools.partial(train_autoencoder_digits, **_AUTOENCODER_RECIPE),
        recipe={
            "model": "VAE(in_channels=1, latent_channels=4, base=32, downsamples=2): 16x16 -> 4x4x4",
            "objective": "MSE + beta * KL per latent entry",
            "optimizer": "AdamW, constant lr",
            "threads": 1,
        }
        | _AUTOENCODER_RECIPE,
        description="VAE compressing 16x16 digits to 4x4x4 latents (lesson 09)",
    )
)


def train_diffusion_digits(
    model: nn.Module,
    *,
    size: int,
    schedule: dict,
    epochs: int,
    lr: float,
    batch_size: int,
    p_uncond: float,
    ema_decay: float,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict:
    """Train a class-conditional diffusion model on the training digits (``data.digits_split``)
    and keep its EMA weights; measure how often DDIM (50 steps, guidance scale 3, noise re-derived
    from the clipped x0) produces the requested class, judged by ``resnet_small_digits`` on 500
    samples (50 per class).

    Returns ``{"metric": "recognised", "value": ..., "recognised_unguided": ...}``.
    """
    from . import data
    from .diffusion import NoiseSchedule, sample_ddim, train_diffusion

    x_train, _, y_train, _ = data.digits_split(size=size)
    noise_schedule = NoiseSchedule(**schedule)
    ema, _ = train_diffusion(
        model, noise_schedule, x_train, y_train, epochs=epochs, lr=lr, batch_size=batch_size,
        p_uncond=p_uncond, ema_decay=ema_decay, device=device, progress=progress,
    )  # fmt: skip
    model.load_state_dict(ema.state_dict())  # ship the averaged weights

    def ddim(scale: float, wanted: torch.Tensor) -> torch.Tensor:
        return sample_ddim(
            model, noise_schedule, (len(wanted), 1, size, size), num_steps=50, y=wanted,
            generator=torch.Generator().manual_seed(0), guidance_scale=scale,
            null_class=model.null_class, use_clipped_model_output=True, progress=False,
        )  # fmt: skip

    return _recognised(ddim, {"value": 3.0, "recognised_unguided": 1.0}, device)


def _recognised(sample: Callable, scales: dict, device) -> dict:
    """How often ``sample(scale, wanted)`` (images in [-1, 1]) draws the requested digit, judged
    by ``resnet_small_digits`` on 500 samples (50 per class), for each named guidance scale."""
    from .quality import recognition_accuracy

    judge = load("resnet_small_digits", device=device)
    wanted = torch.arange(10).repeat_interleave(50)
    scores = {
        name: recognition_accuracy(judge, ((sample(scale, wanted) + 1) / 2).clamp(0, 1), wanted)
        for name, scale in scales.items()
    }
    return {"metric": "recognised", **scores}


def _diffusion_digits() -> nn.Module:
    from .diffusion import ConditionalUNet

    return ConditionalUNet(in_channels=1, base=32, num_classes=10)


_DIFFUSION_RECIPE = {
    "size": 16,
    "schedule": {"num_timesteps": 1000, "schedule": "cosine"},
    "epochs": 400,
    "lr": 1e-3,
    "batch_size": 128,
    "p_uncond": 0.1,
    "ema_decay": 0.999,
}
register(
    Entry(
        name="diffusion_digits",
        build=_diffusion_digits,
        train=functools.partial(train_diffusion_digits, **_DIFFUSION_RECIPE),
        recipe={
            "model": "ConditionalUNet(in_channels=1, base=32, num_classes=10), null class 10",
            "objective": "epsilon prediction, conditioning dropout p_uncond; EMA weights shipped",
            "optimizer": "AdamW, constant lr",
            "threads": 1,
        }
        | _DIFFUSION_RECIPE,
        description="Class-conditional diffusion model of the 16x16 digits (lessons 07-08)",
    )
)


def train_latent_diffusion_digits(
    model: nn.Module,
    *,
    size: int,
    schedule: dict,
    epochs: int,
    lr: float,
    batch_size: int,
    p_uncond: float,
    ema_decay: float,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict:
    """Train a class-conditional diffusion model on the latents of ``autoencoder_digits`` (latent
    diffusion, lesson 09): the training digits are encoded to their latent means, multiplied by
    :func:`~course_utils.latent.latent_scale` (unit variance) and modelled by the same
    ``ConditionalUNet`` and recipe as ``diffusion_digits``; samples are decoded and judged like
    the pixel model's (DDIM 50, 500 samples, guidance 3 and 1).
    """
    from . import data
    from .diffusion import NoiseSchedule, sample_ddim, train_diffusion
    from .latent import latent_scale

    x_train, _, y_train, _ = data.digits_split(size=size)
    vae = load("autoencoder_digits", device=device)
    scale = latent_scale(vae, x_train)
    with torch.no_grad():
        latents = vae.encode(x_train.to(device) * 2 - 1)[0].cpu() * scale
    noise_schedule = NoiseSchedule(**schedule)
    ema, _ = train_diffusion(
        model, noise_schedule, latents, y_train, epochs=epochs, lr=lr, batch_size=batch_size,
        p_uncond=p_uncond, ema_decay=ema_decay, device=device, progress=progress,
    )  # fmt: skip
    model.load_state_dict(ema.state_dict())

    def ddim(guidance: float, wanted: torch.Tensor) -> torch.Tensor:
        z = sample_ddim(
            model, noise_schedule, (len(wanted), *latents.shape[1:]), num_steps=50, y=wanted,
            generator=torch.Generator().manual_seed(0), guidance_scale=guidance,
            null_class=model.null_class, clip_sample=False, progress=False,
        )  # fmt: skip
        with torch.no_grad():
            return vae.decode(z / scale)

    scores = _recognised(ddim, {"value": 3.0, "recognised_unguided": 1.0}, device)
    return scores | {"latent_scale": scale}


def _latent_diffusion_digits() -> nn.Module:
    from .diffusion import ConditionalUNet

    return ConditionalUNet(in_channels=4, base=32, num_classes=10)


_LATENT_RECIPE = _DIFFUSION_RECIPE | {
    "schedule": {"num_timesteps": 1000, "schedule": "cosine", "sample_range": None}
}
register(
    Entry(
        name="latent_diffusion_digits",
        build=_latent_diffusion_digits,
        train=functools.partial(train_latent_diffusion_digits, **_LATENT_RECIPE),
        recipe={
            "model": "ConditionalUNet(in_channels=4, base=32, num_classes=10) on the 4x4x4 "
            "latents of autoencoder_digits, scaled by latent_scale",
            "objective": "epsilon prediction, conditioning dropout p_uncond; EMA weights shipped",
            "optimizer": "AdamW, constant lr",
            "threads": 1,
        }
        | _LATENT_RECIPE,
        description="Class-conditional latent diffusion model of the 16x16 digits (lesson 09)",
    )
)


def train_flow_digits(
    model: nn.Module,
    *,
    size: int,
    epochs: int,
    lr: float,
    batch_size: int,
    p_uncond: float,
    ema_decay: float,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict:
    """Train a class-conditional flow-matching model (rectified flow) on the training digits, the
    same network and recipe as ``diffusion_digits`` with the velocity objective; keep its EMA
    weights; measure how often 20 Euler steps produce the requested digit (500 samples) with
    guidance scale 2 and without guidance.
    """
    from . import data
    from .diffusion import sample_euler, train_flow_matching

    x_train, _, y_train, _ = data.digits_split(size=size)
    ema, _ = train_flow_matching(
        model, x_train, y_train, epochs=epochs, lr=lr, batch_size=batch_size, p_uncond=p_uncond,
        ema_decay=ema_decay, device=device, progress=progress,
    )  # fmt: skip
    model.load_state_dict(ema.state_dict())

    def euler(scale: float, wanted: torch.Tensor) -> torch.Tensor:
        return sample_euler(
            model, (len(wanted), 1, size, size), num_steps=20, y=wanted,
            generator=torch.Generator().manual_seed(0), guidance_scale=scale,
            null_class=model.null_class, progress=False,
        )  # fmt: skip

    return _recognised(euler, {"value": 2.0, "recognised_unguided": 1.0}, device)


_FLOW_RECIPE = {k: v for k, v in _DIFFUSION_RECIPE.items() if k != "schedule"}
register(
    Entry(
        name="flow_digits",
        build=_diffusion_digits,
        train=functools.partial(train_flow_digits, **_FLOW_RECIPE),
        recipe={
            "model": "ConditionalUNet(in_channels=1, base=32, num_classes=10), null class 10",
            "objective": "flow matching (straight paths, velocity x1 - noise, t ~ U[0, 1] fed as "
            "1000 t), conditioning dropout p_uncond; EMA weights shipped",
            "optimizer": "AdamW, constant lr",
            "threads": 1,
        }
        | _FLOW_RECIPE,
        description="Class-conditional flow-matching model of the 16x16 digits (lesson 10)",
    )
)


def train_noisy_classifier_digits(
    model: nn.Module,
    *,
    size: int,
    schedule: dict,
    epochs: int,
    lr: float,
    batch_size: int,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict:
    """Train the noise-aware classifier of classifier guidance (lesson 08) on the training digits
    noised to random timesteps, and score it on the 450 test digits, each noised at 10 random t
    (seeded), and at two fixed noise levels.

    Returns ``{"metric": "accuracy_random_t", "value": ..., "accuracy_t0": ..., "accuracy_t500":
    ...}``.
    """
    from . import data
    from .diffusion import NoiseSchedule, q_sample, train_noisy_classifier

    x_train, x_test, y_train, y_test = data.digits_split(size=size)
    noise_schedule = NoiseSchedule(**schedule)
    train_noisy_classifier(
        model, noise_schedule, x_train, y_train, epochs=epochs, lr=lr, batch_size=batch_size,
        device=device, progress=progress,
    )  # fmt: skip
    model.eval()
    g = torch.Generator().manual_seed(0)
    x0, y = (x_test * 2 - 1).repeat(10, 1, 1, 1), y_test.repeat(10)
    random_t = torch.randint(0, noise_schedule.num_timesteps, (len(x0),), generator=g)
    scores = {}
    with torch.no_grad():
        for name, t in (
            ("value", random_t),
            ("accuracy_t0", torch.zeros_like(random_t)),
            ("accuracy_t500", torch.full_like(random_t, 500)),
        ):
            x_t = q_sample(noise_schedule, x0, t, torch.randn(x0.shape, generator=g))
            predicted = model(x_t.to(device), t.to(device)).argmax(1).cpu()
            scores[name] = (predicted == y).float().mean().item()
    return {"metric": "accuracy_random_t", **scores}


def _noisy_classifier_digits() -> nn.Module:
    from .diffusion import NoisyClassifier

    return NoisyClassifier(in_channels=1, base=32, num_classes=10)


_NOISY_CLASSIFIER_RECIPE = {
    "size": 16,
    "schedule": {"num_timesteps": 1000, "schedule": "cosine"},
    "epochs": 150,
    "lr": 1e-3,
    "batch_size": 128,
}
register(
    Entry(
        name="noisy_classifier_digits",
        build=_noisy_classifier_digits,
        train=functools.partial(train_noisy_classifier_digits, **_NOISY_CLASSIFIER_RECIPE),
        recipe={
            "model": "NoisyClassifier(in_channels=1, base=32, num_classes=10)",
            "objective": "cross-entropy on q_sample(x0, t), t ~ U{0..T-1}, same schedule as "
            "diffusion_digits",
            "optimizer": "AdamW, constant lr",
            "threads": 1,
        }
        | _NOISY_CLASSIFIER_RECIPE,
        description="Noise-aware digit classifier p(y | x_t, t) for classifier guidance (lesson 08)",
    )
)


if __name__ == "__main__":
    main()
