"""Lesson 00, used by all: the checkpoint store -- models that take minutes to train, trained once
and shipped with the course.

A lesson that needs a trained detector calls ``zoo.load(name)`` and gets it, ready to use, in
seconds; ``make checkpoints`` (``python -m course_utils.zoo``) retrains every entry from its
recipe, with fixed seeds, so anyone can check where the shipped weights come from.

How the store finds a recipe, without knowing any topic and without side effects:

* each recipe (how to build and train a shipped model) is an :class:`Entry`, plain data, listed
  in the ``CHECKPOINTS`` tuple of the module that trains it (``models/recipes.py``,
  ``detection/recipes.py``, ...). Importing that module changes nothing anywhere: there is no
  registration step;
* the manifest (``data/checkpoints/manifest.json``) is the index: one record per checkpoint,
  naming the module of its recipe. So the store knows every name by reading one JSON file, and
  imports the one recipe module an entry needs when that entry is loaded or trained. A typo fails
  at once with the closest names (``did you mean 'lenet5_digits'?``).

On disk (``data/checkpoints/``), per entry: ``NAME.safetensors`` (the state dict; safetensors
holds only tensors, so unlike a pickled ``torch.save`` file it cannot run code when loaded) and
one record in ``manifest.json``: sha256, parameter count, dtype, training recipe, the
configuration the model was trained with, metric reached, the torch version and the processor.
:func:`load` refuses a file whose sha256 does not match the manifest, and a record whose weights
belong to another architecture.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import hashlib
import importlib
import json
import platform
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from .runtime import device as default_device
from .runtime import seed_everything, write_atomically

__all__ = ["CheckpointError", "Entry", "REGISTRY", "info", "load", "cpu_threads", "status"]

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "data" / "checkpoints"
MANIFEST = "manifest.json"
_DTYPES = {"float16": torch.float16, "float32": torch.float32}


class CheckpointError(RuntimeError):
    """A checkpoint file or its manifest record is missing or does not match."""


@dataclass(frozen=True)
class Entry:
    """How to rebuild one checkpoint from scratch: data, listed in its module's ``CHECKPOINTS``.

    ``build()`` returns the untrained architecture: ``functools.partial(Class, **arguments)``,
    whose call is written into the recipe (``"model": "UNet(in_channels=3, ...)"`` followed by
    the words of ``architecture``), or a function for a model made of models (its words then say
    what it builds). ``trainer(model, **hyper)`` trains it in place, deterministically (it fixes its
    own seeds), and returns ``{"metric": name, "value": float, ...}``: further numbers are recorded
    as secondary scores, anything else (a training ``History`` for a lesson's curves) is the
    caller's. ``hyper`` (the numbers) and ``notes`` (the words: optimiser, objective, ...) make the
    recipe recorded in the manifest. ``config`` is what a user of the model must match (input range
    and size, classes, noise schedule): :func:`load` hands it out as ``model.config``.
    ``dtype="float16"`` halves the file; use ``"float32"`` where that costs quality. ``needs``
    names the shipped models its training or its metric loads (a judge, a frozen detector).
    ``threads`` is the CPU thread count it trains on: the same count gives the same bytes, so a
    recipe that needs two cores to fit its time budget records it.
    """

    name: str
    build: Callable[[], nn.Module]
    trainer: Callable[..., dict]
    hyper: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    architecture: str = ""
    description: str = ""
    config: dict = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    dtype: str = "float16"
    threads: int = 1

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9_]+", self.name):
            raise ValueError(f"checkpoint names are lower_snake_case file names, got {self.name!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")

    @property
    def recipe(self) -> dict:
        """The training recipe as the manifest records it: model, words, threads, numbers."""
        model = f"{_call(self.build)}{self.architecture}"
        threads = {"threads": self.threads}
        return ({"model": model} if model else {}) | self.notes | threads | self.hyper

    def train(self, model: nn.Module, **overrides) -> dict:
        """Train ``model`` with this recipe; ``overrides`` (``device=``, ``progress=``, a shorter
        run in FAST mode) replace or add keyword arguments of ``trainer``."""
        return self.trainer(model, **(self.hyper | overrides))


def _call(build: Callable) -> str:
    """``"UNet(in_channels=3, base=16)"`` for ``functools.partial(UNet, in_channels=3, base=16)``:
    the builder, written once as code, is also its description; ``""`` for any other builder."""
    if not isinstance(build, functools.partial) or build.args:
        return ""
    arguments = ", ".join(f"{key}={value!r}" for key, value in build.keywords.items())
    return f"{build.func.__name__}({arguments})"


def _unknown(name: str, known: list[str]) -> str:
    """The message for a name with no checkpoint: the closest names first, then all of them."""
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    return f"no checkpoint named {name!r}; {hint}known: {', '.join(sorted(known)) or 'none'}"


def _entry(name: str, root: Path = CHECKPOINT_DIR) -> Entry:
    """Entry ``name``, from the ``CHECKPOINTS`` of the module its manifest record names (the one
    module imported: a detector's lookup does not import diffusers)."""
    module = info(name, root=root)["module"]
    for entry in importlib.import_module(module).CHECKPOINTS:
        if entry.name == name:
            return entry
    raise CheckpointError(f"{module}.CHECKPOINTS has no entry {name!r}, which the manifest names")


class _Shipped(Mapping):
    """``name -> Entry`` for every shipped checkpoint. The names are the manifest's keys; looking
    an entry up imports its recipe module. Read-only: nothing is registered anywhere."""

    def __getitem__(self, name: str) -> Entry:
        return _entry(name)

    def __contains__(self, name: object) -> bool:
        return name in _read_manifest(CHECKPOINT_DIR)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(_read_manifest(CHECKPOINT_DIR)))

    def __len__(self) -> int:
        return len(_read_manifest(CHECKPOINT_DIR))


#: Every shipped checkpoint: ``for name in REGISTRY`` lists them, ``REGISTRY[name]`` is the Entry.
REGISTRY = _Shipped()


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
    path = Path(root) / MANIFEST
    if not path.exists():
        raise CheckpointError(f"{_shown(path)} is missing; run `make checkpoints NAMES={name}`")
    manifest = _read_manifest(root)
    if name not in manifest:
        raise KeyError(_unknown(name, list(manifest)))
    return manifest[name]


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
    if digest == record["sha256"]:
        return data
    manifest = _shown(Path(root) / MANIFEST)
    stored = _header_metadata(data).get("weights_sha256")
    if stored is not None and stored == _weights_digest(load_safetensors(data)):
        # the file still matches the digest written into it: it is the record that changed
        raise CheckpointError(
            f"{manifest}'s sha256 for {name!r} ({record['sha256']}) does not match "
            f"{_shown(path)} ({digest}), which is intact (its weights match the digest saved "
            f"inside it): the manifest record is wrong; `git checkout {manifest}` or run "
            f"`make checkpoints NAMES={name}`"
        )
    raise CheckpointError(  # a truncated download, a git-lfs pointer, an edited file...
        f"{_shown(path)} is corrupted: sha256 {digest} != manifest {record['sha256']}; "
        f"run `make checkpoints NAMES={name}` or `git checkout` it"
    )


def _weights_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _sorted_header(data: bytes) -> bytes:
    """The safetensors file ``data`` with its JSON header's keys sorted: safetensors writes the
    metadata in hash-map order, which changes from run to run (and with it the sha256)."""
    size = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8 : 8 + size]), sort_keys=True, separators=(",", ":"))
    header = header.encode().ljust(size, b" ")  # same length: the tensor offsets stay valid
    return data[:8] + header + data[8 + size :]


def _header_metadata(data: bytes) -> dict:
    """The ``__metadata__`` of a safetensors file: an 8-byte header length, then a JSON header."""
    try:
        size = int.from_bytes(data[:8], "little")
        return json.loads(data[8 : 8 + size]).get("__metadata__") or {}
    except (ValueError, AttributeError):  # not a safetensors header at all
        return {}


def load(
    name: str, *, root: Path = CHECKPOINT_DIR, device: torch.device | str | None = None
) -> nn.Module:
    """The trained model ``name``: hash verified, weights loaded (as float32), in ``eval()`` mode,
    on ``device`` (default ``course_utils.device()``), with ``model.config``: the configuration
    it was trained with (a copy of the manifest's; empty for entries that record none). The
    model's own ``forward`` and the functions it is given to check their inputs, so a model a
    learner builds from the same class is checked the same way.

    Raises ``KeyError`` for an unknown name (with the closest names) and :class:`CheckpointError`
    for a missing or corrupted file, or a record of another architecture (with the command that
    fixes it).
    """
    state = load_safetensors(_verified_bytes(name, root))
    # float16 on disk saves space; compute in float32 (int buffers stay as they are)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model = _entry(name, root).build()
    if _shapes(model.state_dict()) != _shapes(state):
        record = info(name, root=root)
        raise CheckpointError(
            f"{_shown(Path(root) / record['file'])} holds the weights of "
            f"{_architecture_of(state, record, root)}, but {name!r} builds a "
            f"{type(model).__name__}: its manifest record is another model's; "
            f"`git checkout {_shown(Path(root) / MANIFEST)}` or run `make checkpoints NAMES={name}`"
        )
    model.load_state_dict(state, strict=True)
    model.config = json.loads(json.dumps(info(name, root=root).get("config", {})))  # a copy
    return model.eval().to(default_device(device))  # a device this machine lacks: a clear error


def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """The architecture as a state dict sees it: every tensor's name and shape."""
    return {key: tuple(tensor.shape) for key, tensor in state.items()}


def _architecture_of(state: dict, record: dict, root: Path) -> str:
    """``"a MiniVGG (the weights of 'minivgg_digits')"``: the class of the entry whose builder fits
    ``state``, trying first the entry the file is named after (a record copied from another)."""
    names = sorted(_read_manifest(root), key=lambda other: f"{other}.safetensors" != record["file"])
    for other in names:
        with contextlib.suppress(Exception):  # an entry whose module cannot load: not this one
            model = _entry(other, root).build()
            if _shapes(model.state_dict()) == _shapes(state):
                return f"a {type(model).__name__} (the weights of {other!r})"
    return "an architecture no entry builds"


@contextlib.contextmanager
def cpu_threads(count: int = 1) -> Iterator[None]:
    """Run the block on ``count`` CPU threads (one by default), then restore the thread count.

    A sum split over several threads adds its terms in another order, so trained weights would
    depend on the machine's core count; on a fixed count they are the same bytes on the same
    processor and torch (another processor may round differently in its vector kernels).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


#: How many optimiser steps the drift fingerprint covers: seconds to rerun for any entry.
FINGERPRINT_STEPS = 3


class _Stop(Exception):
    """Raised by the step hook to end a fingerprint run after its last step."""


@contextlib.contextmanager
def _first_steps(model: nn.Module, record: list, stop: bool) -> Iterator[None]:
    """While the block trains ``model``, append to ``record`` the fingerprint of its weights after
    the first :data:`FINGERPRINT_STEPS` optimiser steps (any optimiser: a global step hook), and
    with ``stop=True`` end the training right there by raising :class:`_Stop`."""
    start = {k: p.detach().double().clone() for k, p in model.named_parameters()}
    steps = 0

    def after_step(optimizer, args, kwargs):
        nonlocal steps
        steps += 1
        if steps == FINGERPRINT_STEPS:
            record.append(_fingerprint(model, start))
            if stop:
                raise _Stop

    handle = register_optimizer_step_post_hook(after_step)
    try:
        yield
    finally:
        handle.remove()


def _fingerprint(model: nn.Module, start: dict[str, torch.Tensor]) -> list[float]:
    """Four numbers that summarise how the first steps moved the weights (``delta``): its sum, L1
    and L2 norms and its projection on a fixed random direction.

    On the same processor and torch they repeat exactly, and a change of the recipe's code --
    data, order, learning rate, loss, initialisation -- moves them by far more than
    :func:`drift`'s tolerance; another processor rounds differently (see
    :func:`same_first_steps`).
    """
    delta = torch.cat(
        [
            (p.detach().double().cpu() - start[k].cpu()).flatten()
            for k, p in model.named_parameters()
        ]
    )
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(delta.numel(), generator=g, dtype=torch.float64)
    return [
        delta.sum().item(),
        delta.abs().sum().item(),
        delta.norm().item(),
        (delta @ direction).item(),
    ]


def fingerprint(entry: Entry) -> list[float]:
    """Rerun the first :data:`FINGERPRINT_STEPS` optimiser steps of ``entry``'s recipe (as
    :func:`train_checkpoint` runs it: seed 0, its CPU threads) and return their fingerprint."""
    seed_everything(0)
    model = entry.build()
    found: list = []
    with cpu_threads(entry.threads), _first_steps(model, found, stop=True):
        try:
            entry.train(model)
        except _Stop:
            pass
    if not found:
        raise RuntimeError(
            f"{entry.name}'s recipe took fewer than {FINGERPRINT_STEPS} optimiser steps"
        )
    return found[0]


def same_first_steps(now: list[float], record: dict, *, rtol: float = 1e-4) -> bool:
    """Do fingerprint ``now`` (measured here) and manifest ``record``'s agree?

    Where the file was trained (:func:`trained_here`), all four numbers agree to ``rtol``. On
    another processor, the last bits of a few gradients round differently, and Adam divides each
    gradient by its own size, so a parameter whose gradient is almost zero can step either way:
    the signed sum and projection then move by up to ~10 % of the L2 norm (measured: MiniVGG, AMD
    EPYC against Intel Xeon), while the L1 and L2 norms agree to ~1e-4. Only the two norms are
    compared there, to 10x that: a weaker check, which still catches a changed learning rate,
    batch size, optimiser or number of parameters.
    """
    pairs = list(zip(now, record["fingerprint"]["values"]))
    if not trained_here(record):
        pairs, rtol = pairs[1:3], 1e-3
    return all(abs(a - b) <= rtol * max(abs(b), 1e-12) for a, b in pairs)


def drift(name: str, *, root: Path = CHECKPOINT_DIR) -> str | None:
    """``None`` if today's recipe of ``name`` still starts as the shipped file's training did (its
    recorded fingerprint, see :func:`same_first_steps`), else what differs -- the shipped weights
    are then not what today's code trains: retrain with ``make checkpoints NAMES=name``."""
    record = info(name, root=root)
    if record.get("fingerprint") is None:
        return f"{name} has no recorded fingerprint; run `make checkpoints NAMES={name}`"
    now = fingerprint(_entry(name, root))
    if same_first_steps(now, record):
        return None
    return (
        f"{name}: the first {FINGERPRINT_STEPS} steps of today's recipe give {now}, the shipped "
        f"training gave {record['fingerprint']['values']} (on {record.get('trained_on')}); "
        f"run `make checkpoints NAMES={name}`"
    )


def _processor() -> str:
    """The CPU's model name (its kernels' rounding decides the exact bytes of trained weights)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _machine() -> dict[str, str]:
    """What decides the exact bytes of trained weights: the CPU's model name, the vector
    instructions torch's kernels use on it (``"AVX512"``, ``"AVX2"``, ...: a virtual machine may
    name two generations of a processor alike, and their kernels round differently) and torch."""
    return {
        "trained_on": _processor(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
    }


def trained_here(record: dict) -> bool:
    """Was manifest ``record`` trained on a machine like this one (:func:`_machine`), so that
    retraining it here gives the same bytes? A record without ``cpu_capability`` (older files)
    counts as trained elsewhere."""
    return all(record.get(key) == value for key, value in _machine().items())


def train_checkpoint(entry: Entry, *, root: Path = CHECKPOINT_DIR) -> dict:
    """Train ``entry`` from scratch, save ``NAME.safetensors`` and its manifest record.

    Same code, same seed, same CPU thread count -> the same bytes on the same processor and torch, so
    the sha256 in the manifest documents exactly which weights were shipped; the record says
    where they were trained, and names the module of ``entry.trainer``: the module that lists
    ``entry`` in its ``CHECKPOINTS``, where :func:`load` finds it again. Returns the record.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    seed_everything(0)  # the untrained weights are part of the recipe too
    model = entry.build()
    first_steps: list = []
    with cpu_threads(entry.threads), _first_steps(model, first_steps, stop=False):
        result = entry.train(model)
    state = _state_on_disk(model, entry)
    # the digest inside the file tells a damaged file from a wrong manifest record later
    data = _sorted_header(
        save_safetensors(state, metadata={"format": "pt", "weights_sha256": _weights_digest(state)})
    )
    record = {
        "file": f"{entry.name}.safetensors",
        "module": entry.trainer.__module__,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "params": sum(p.numel() for p in model.parameters()),
        "dtype": entry.dtype,
        "recipe": entry.recipe,
        "metric": {"name": result["metric"], "value": float(result["value"])},
        **_machine(),
    }
    if first_steps:  # a recipe of fewer steps has no fingerprint (and needs none: it is quick)
        record["fingerprint"] = {"steps": FINGERPRINT_STEPS, "values": first_steps[0]}
    if entry.config:
        record["config"] = entry.config
    # secondary scores, e.g. the detector's 0.5:0.95 mAP next to its mAP@0.5; a History or
    # other objects a recipe returns for a lesson are not scores
    others = {
        k: float(v)
        for k, v in result.items()
        if k not in ("metric", "value") and isinstance(v, Real) and not isinstance(v, bool)
    }
    if others:
        record["scores"] = others
    write_atomically(root / record["file"], data)
    manifest = _read_manifest(root) | {entry.name: record}
    write_atomically(
        root / MANIFEST, (json.dumps(manifest, sort_keys=True, indent=2) + "\n").encode()
    )
    return record


def _state_on_disk(model: nn.Module, entry: Entry) -> dict[str, torch.Tensor]:
    """``model``'s state dict as saved: on the CPU, floats in ``entry.dtype``, each finite."""
    dtype = _DTYPES[entry.dtype]
    state = {}
    for key, tensor in model.state_dict().items():
        cast = dtype if tensor.is_floating_point() else tensor.dtype  # int buffers stay ints
        # copy=True: tied weights would otherwise share memory, which safetensors refuses
        tensor = tensor.detach().to(device="cpu", dtype=cast, copy=True)
        if not torch.isfinite(tensor).all():  # NaN from training, or a weight > 65504 in float16
            raise ValueError(
                f"{entry.name}: {key} is not finite as {entry.dtype}; use dtype='float32'?"
            )
        state[key] = tensor.contiguous()
    return state


def status(name: str, *, root: Path = CHECKPOINT_DIR) -> str:
    """One line about checkpoint ``name``: the metric reached, parameters and file size, or
    ``NOT READY (...)`` with what is wrong and the command that fixes it. Never raises for a
    known name, so a list of all checkpoints survives one that is missing."""
    try:
        _verified_bytes(name, root)
    except CheckpointError as err:
        return f"NOT READY ({err})"
    record = info(name, root=root)
    metric = f"{record['metric']['name']}={record['metric']['value']:.4f}"
    return f"{metric}, {record['params']:,} params, {record['bytes'] / 1e6:.2f} MB"


def _in_training_order(names: list[str], entries: Mapping[str, Entry]) -> list[str]:
    """``names`` with every entry after the ones it ``needs`` that are retrained too."""
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name not in ordered:
            for needed in entries[name].needs:
                if needed in names:
                    visit(needed)
            ordered.append(name)

    for name in names:
        visit(name)
    return ordered


def main(argv: list[str] | None = None) -> None:
    """``python -m course_utils.zoo [--root DIR] [--list] [--module M] [NAME ...]``
    (``make checkpoints``)."""
    parser = argparse.ArgumentParser(
        prog="python -m course_utils.zoo",
        description="Train the course's checkpoints and record them in manifest.json.",
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help="entries to retrain (default: all)"
    )
    parser.add_argument("--root", type=Path, default=CHECKPOINT_DIR, help="checkpoint folder")
    parser.add_argument("--list", action="store_true", help="show the entries and their state")
    parser.add_argument(
        "--module",
        action="append",
        default=[],
        help="also the CHECKPOINTS of this recipe module (a new entry, not yet in the manifest)",
    )
    args = parser.parse_args(argv)
    entries = {name: REGISTRY[name] for name in REGISTRY}  # imports every recipe module
    for module in args.module:
        entries |= {entry.name: entry for entry in importlib.import_module(module).CHECKPOINTS}
    unknown = [n for n in args.names if n not in entries]
    if unknown:
        parser.error(f"unknown checkpoint(s) {', '.join(unknown)}; known: {', '.join(entries)}")
    names = _in_training_order(args.names or sorted(entries), entries)
    if not names:
        print("no checkpoints are known")
    for name in names:
        if args.list:
            print(f"{name}: {entries[name].description} -- {status(name, root=args.root)}")
        else:
            record = train_checkpoint(entries[name], root=args.root)
            print(f"{name}: {status(name, root=args.root)} -> {_shown(args.root / record['file'])}")


if __name__ == "__main__":
    main()
