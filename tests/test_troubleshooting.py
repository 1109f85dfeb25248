"""The README's Troubleshooting table is built from the errors the package really raises.

Each case below triggers one error a learner can meet and names a fragment of its message; the
README must quote ``ExceptionName: fragment`` (``ExceptionName: … fragment`` when the message
starts with call-specific text) and say what to do. The reverse holds too: every
error the table quotes is triggered here, so the table cannot drift from the code.
"""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from course_utils import data, diffusion, image, runtime, style, train, zoo
from course_utils.diffusion import (
    VAE,
    ConditionalUNet,
    NoiseSchedule,
    ddim_step,
    q_sample,
    sample_ddim,
)
from course_utils.diffusion.tokenizer import build_tokenizer, check_prompt

ROOT = Path(__file__).resolve().parent.parent
QUOTED_ERROR = re.compile(r"`(\w+(?:Error|Unavailable)): ([^`]+)`")


def troubleshooting_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]


def corrupted_checkpoint_root(tmp_path: Path) -> Path:
    shutil.copy(zoo.CHECKPOINT_DIR / zoo.MANIFEST, tmp_path / zoo.MANIFEST)
    record = json.loads((tmp_path / zoo.MANIFEST).read_text())["lenet5_digits"]
    (tmp_path / record["file"]).write_bytes(b"not the weights")
    return tmp_path


def wrong_manifest_root(tmp_path: Path) -> Path:
    """A copy of the shipped checkpoint whose manifest record has another sha256."""
    manifest = json.loads((zoo.CHECKPOINT_DIR / zoo.MANIFEST).read_text())
    record = manifest["lenet5_digits"]
    shutil.copy(zoo.CHECKPOINT_DIR / record["file"], tmp_path / record["file"])
    manifest["lenet5_digits"]["sha256"] = "0" * 64
    (tmp_path / zoo.MANIFEST).write_text(json.dumps(manifest))
    return tmp_path


def env_value(monkeypatch, name: str, value: str, read):
    monkeypatch.setenv(name, value)
    read()


def unknown_device(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from course_utils import device

    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    device()


# (id, trigger(tmp_path, monkeypatch), exception, fragment of its message quoted by the README)
CASES = [
    (
        "unknown prompt word",
        lambda tmp, mp: check_prompt(build_tokenizer(), "a purple 3"),
        ValueError,
        "unknown word(s) ['purple']; this model knows only",
    ),
    (
        "prompt outside the grammar",
        lambda tmp, mp: data.parse_caption("a red 3 near a blue 4"),
        ValueError,
        "is not a caption of the grammar",
    ),
    (
        "offline dataset",
        lambda tmp, mp: data.mnist(download=True),
        data.DatasetUnavailable,
        "There is no network, so MNIST cannot be downloaded",
    ),
    (
        "dataset not downloaded",
        lambda tmp, mp: data.mnist(download=False),
        data.DatasetUnavailable,
        "MNIST is not in",
    ),
    (
        "offline weights",
        lambda tmp, mp: style.style_extractor("vgg19"),
        style.WeightsUnavailable,
        "There is no network to download the VGG19 weights",
    ),
    (
        "corrupted checkpoint",
        lambda tmp, mp: zoo.load("lenet5_digits", root=corrupted_checkpoint_root(tmp)),
        zoo.CheckpointError,
        "is corrupted: sha256",
    ),
    (
        "wrong manifest record",
        lambda tmp, mp: zoo.load("lenet5_digits", root=wrong_manifest_root(tmp)),
        zoo.CheckpointError,
        "manifest.json's sha256 for",
    ),
    (
        "wrong noise schedule",
        lambda tmp, mp: sample_ddim(
            zoo.load("diffusion_digits", device="cpu"), NoiseSchedule(), (1, 1, 16, 16), num_steps=1
        ),
        ValueError,
        "this model was trained with NoiseSchedule(",
    ),
    (
        "missing checkpoint",
        lambda tmp, mp: zoo.load("lenet5_digits", root=tmp),
        zoo.CheckpointError,
        "manifest.json is missing",
    ),
    (
        "forced device",
        lambda tmp, mp: unknown_device(mp),
        RuntimeError,
        "COURSE_DEVICE='cuda' but CUDA is not available on this machine",
    ),
    (
        "misspelled device",
        lambda tmp, mp: env_value(mp, "COURSE_DEVICE", "gpu", runtime.device),
        ValueError,
        "COURSE_DEVICE='gpu' is not a device name",
    ),
    (
        "FAST value",
        lambda tmp, mp: env_value(
            mp, "COURSE_FAST", "full", lambda: runtime._env_flag("COURSE_FAST")
        ),
        ValueError,
        "COURSE_FAST='full' is not a yes/no value",
    ),
    (
        "HWC image",
        lambda tmp, mp: image.rgb_to_gray(torch.rand(8, 8, 3)),
        ValueError,
        "it looks like HWC (channels last)",
    ),
    ("unknown checkpoint", lambda tmp, mp: zoo.load("lenet5"), KeyError, "no checkpoint named"),
    (
        "samples in [-1, 1] judged",
        lambda tmp, mp: diffusion.recognition_accuracy(
            diffusion.load_judge(device="cpu"),
            torch.rand(2, 1, 16, 16) * 2 - 1,
            torch.tensor([0, 1]),
        ),
        ValueError,
        "recognition_accuracy takes images in [0, 1]",
    ),
    (
        "images in [0, 1] diffused",
        lambda tmp, mp: q_sample(
            NoiseSchedule(10),
            torch.full((1, 1, 2, 2), 3.0),
            torch.tensor([1]),
            torch.randn(1, 1, 2, 2),
        ),
        ValueError,
        "must lie in [-1, 1]",
    ),
    (
        "clipping latents",
        lambda tmp, mp: ddim_step(
            NoiseSchedule(10, sample_range=None), torch.zeros(1, 4), 5, 4, torch.zeros(1, 4)
        ),
        ValueError,
        "clip_sample=True needs a bounded sample_range",
    ),
    (
        "unknown class label",
        lambda tmp, mp: ConditionalUNet(1, 8, 10)(
            torch.randn(1, 1, 16, 16), torch.tensor([1]), torch.tensor([11])
        ),
        ValueError,
        "ConditionalUNet takes labels in [0, 9]",
    ),
    (
        "VAE input size",
        lambda tmp, mp: VAE(base=8).encode(torch.randn(1, 1, 15, 15)),
        ValueError,
        "VAE.encode takes heights and widths divisible by",
    ),
    (
        "batch format",
        lambda tmp, mp: train.fit(torch.nn.Linear(2, 2), [{"x": 1}], progress=False),
        ValueError,
        "expected (inputs, targets) batches",
    ),
]


@pytest.mark.parametrize(
    "trigger, exception, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_error_is_raised_and_explained_in_the_readme(
    trigger, exception, fragment, tmp_path, monkeypatch
):
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(exception) as raised:
        trigger(tmp_path, monkeypatch)
    message = str(raised.value).strip("'\"")  # KeyError quotes its message
    assert fragment in message
    # "… " in the README stands for the start of a message that depends on the call
    start = "" if message.startswith(fragment) else "… "
    quoted = f"`{type(raised.value).__name__}: {start}{fragment}"
    assert quoted in troubleshooting_section(), f"README's Troubleshooting should quote {quoted}`"


def test_every_error_the_readme_quotes_is_tested():
    quoted = QUOTED_ERROR.findall(troubleshooting_section())
    assert len(quoted) >= 10, quoted
    for name, text in quoted:
        text = text.removeprefix("… ")
        tested = [f for _, _, exc, f in CASES if exc.__name__ == name and text.startswith(f)]
        assert tested, f"README quotes `{name}: {text}` but no case here raises it"
