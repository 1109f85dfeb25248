"""The checkpoint store: models that take minutes to train, trained once and shipped with the course.

A lesson that needs a trained detector calls ``zoo.load(name)`` and gets it, ready to use, in
seconds; ``make checkpoints`` (``python -m course_utils.zoo``) retrains every entry from its
recipe, with fixed seeds, so anyone can check where the shipped weights come from.

The store knows no topic. Each recipe (how to build and train a shipped model, how its metric is
measured) lives next to the code it trains -- ``models/recipes.py``, ``detection/recipes.py``,
... -- and registers itself with :func:`register`. Each manifest record names the module of its
recipe, so the store imports that module the first time the entry is looked up.

On disk (``data/checkpoints/``), per entry: ``NAME.safetensors`` (the state dict; safetensors
holds only tensors, so unlike a pickled ``torch.save`` file it cannot run code when loaded) and
one record in ``manifest.json``: sha256, parameter count, dtype, training recipe, the
configuration the model was trained with, metric reached, the torch version and the processor.
:func:`load` refuses a file whose sha256 does not match the manifest.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import platform
import re
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from .inputs import config_guard
from .runtime import device as default_device
from .runtime import seed_everything, write_atomically

__all__ = [
    "CHECKPOINT_DIR",
    "CheckpointError",
    "Entry",
    "REGISTRY",
    "register",
    "load",
    "info",
    "train_checkpoint",
    "one_thread",
    "status",
    "fingerprint",
    "drift",
]

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "data" / "checkpoints"
MANIFEST = "manifest.json"
_DTYPES = {"float16": torch.float16, "float32": torch.float32}


class CheckpointError(RuntimeError):
    """A checkpoint file or its manifest record is missing or does not match."""


@dataclass(frozen=True)
class Entry:
    """How to rebuild one checkpoint from scratch.

    ``build()`` returns the untrained architecture (a function of the recipe's module: the
    manifest records that module so the store can find the recipe again); ``train(model)`` trains
    it in place, deterministically (it fixes its own seeds), and returns ``{"metric": name,
    "value": float, ...}``: further numbers are recorded as secondary scores, anything else (a
    training ``History`` for a lesson's curves) is the caller's. ``recipe`` (JSON-serialisable)
    describes the training for humans; ``config`` is what a user of the model must match (input
    range and size, classes, noise schedule): :func:`load` hands it out as ``model.config``.
    ``dtype="float16"`` halves the file; use ``"float32"`` where that costs quality. ``needs``
    names the shipped models its training or its metric loads (a judge, a frozen detector).
    """

    name: str
    build: Callable[[], nn.Module]
    train: Callable[[nn.Module], dict]
    recipe: dict
    dtype: str = "float16"
    description: str = ""
    config: dict = field(default_factory=dict)
    needs: tuple[str, ...] = ()  # shipped models its training loads (retrained first)


class _Registry(MutableMapping):
    """``name -> Entry`` for every recipe, filled as the recipe modules are imported.

    Looking up, listing or counting entries first imports the recipe module of every record of
    the shipped manifest (once), so ``REGISTRY`` is complete without the store importing any
    topic itself.
    """

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._found_all = False

    def find_all(self) -> None:
        if not self._found_all:
            self._found_all = True  # first: the imported modules register into this registry
            for record in _read_manifest(CHECKPOINT_DIR).values():
                if "module" in record:
                    importlib.import_module(record["module"])

    def add(self, entry: Entry) -> None:
        """Register ``entry`` without looking for other recipes (one may be importing now)."""
        if entry.name in self._entries:
            raise ValueError(f"a checkpoint named {entry.name!r} is already registered")
        self._entries[entry.name] = entry

    def __getitem__(self, name: str) -> Entry:
        if name not in self._entries:
            self.find_all()
        return self._entries[name]

    def __setitem__(self, name: str, entry: Entry) -> None:
        self._entries[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        self.find_all()
        return iter(dict(self._entries))

    def __len__(self) -> int:
        self.find_all()
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        if name not in self._entries:
            self.find_all()
        return name in self._entries


REGISTRY = _Registry()


def register(entry: Entry) -> Entry:
    """Add ``entry`` to :data:`REGISTRY` (its name becomes the file name) and return it."""
    if not re.fullmatch(r"[a-z0-9_]+", entry.name):
        raise ValueError(f"checkpoint names are lower_snake_case file names, got {entry.name!r}")
    if entry.dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {entry.dtype!r}")
    REGISTRY.add(entry)
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
    it was trained with (a copy of the manifest's; empty for entries that record none). Calling
    the model checks its input against that configuration (:mod:`course_utils.inputs`).

    Raises ``KeyError`` for an unknown name and :class:`CheckpointError` for a missing or corrupted
    file (with the command that fixes it).
    """
    state = load_safetensors(_verified_bytes(name, root))
    # float16 on disk saves space; compute in float32 (int buffers stay as they are)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model = _entry(name).build()
    model.load_state_dict(state, strict=True)  # strict: every weight must match the architecture
    model.config = json.loads(json.dumps(info(name, root=root).get("config", {})))  # a copy
    if model.config:  # every call checks its input against what the model was trained on
        model.register_forward_pre_hook(config_guard(name, model.config))
    return model.eval().to(default_device(device))  # a device this machine lacks: a clear error


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block on one CPU thread, then restore the thread count.

    A sum split over several threads adds its terms in another order, so trained weights would
    depend on the machine's core count; on one thread they are the same bytes on the same
    processor and torch (another processor may round differently in its vector kernels).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
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


def fingerprint(name: str) -> list[float]:
    """Rerun the first :data:`FINGERPRINT_STEPS` optimiser steps of entry ``name``'s recipe (as
    :func:`train_checkpoint` runs it: seed 0, one CPU thread) and return their fingerprint."""
    entry = _entry(name)
    seed_everything(0)
    model = entry.build()
    found: list = []
    with one_thread(), _first_steps(model, found, stop=True):
        try:
            entry.train(model)
        except _Stop:
            pass
    if not found:
        raise RuntimeError(f"{name}'s recipe took fewer than {FINGERPRINT_STEPS} optimiser steps")
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
    now = fingerprint(name)
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


def train_checkpoint(name: str, *, root: Path = CHECKPOINT_DIR) -> dict:
    """Train entry ``name`` from scratch, save ``NAME.safetensors`` and its manifest record.

    Same code, same seed, one CPU thread -> the same bytes on the same processor and torch, so
    the sha256 in the manifest documents exactly which weights were shipped; the record says
    where they were trained. Returns the manifest record.
    """
    entry = _entry(name)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    seed_everything(0)  # the untrained weights are part of the recipe too
    model = entry.build()
    first_steps: list = []
    with one_thread(), _first_steps(model, first_steps, stop=False):
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
    # the digest inside the file tells a damaged file from a wrong manifest record later
    data = _sorted_header(
        save_safetensors(state, metadata={"format": "pt", "weights_sha256": _weights_digest(state)})
    )

    record = {
        "file": f"{name}.safetensors",
        "module": entry.build.__module__,
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
    manifest = _read_manifest(root) | {name: record}
    write_atomically(
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


def _in_training_order(names: list[str]) -> list[str]:
    """``names`` with every entry after the ones it ``needs`` that are retrained too."""
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name not in ordered:
            for needed in REGISTRY[name].needs:
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
        help="import this recipe module first (a new entry, not yet in the manifest)",
    )
    args = parser.parse_args(argv)
    for module in args.module:
        importlib.import_module(module)
    unknown = [n for n in args.names if n not in REGISTRY]
    if unknown:
        parser.error(
            f"unknown checkpoint(s) {', '.join(unknown)}; registered: {', '.join(sorted(REGISTRY))}"
        )
    names = _in_training_order(args.names or sorted(REGISTRY))
    if not names:
        print("no checkpoints are registered")
    for name in names:
        if args.list:
            print(f"{name}: {REGISTRY[name].description} -- {status(name, root=args.root)}")
        else:
            record = train_checkpoint(name, root=args.root)
            print(f"{name}: {status(name, root=args.root)} -> {_shown(args.root / record['file'])}")


if __name__ == "__main__":
    # `python -m` runs this file as `__main__`, a second copy of the module: the recipes register
    # into the imported `course_utils.zoo`, so run that copy's main
    from course_utils import zoo

    zoo.main()
