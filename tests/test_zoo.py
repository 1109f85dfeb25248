"""Tests for course_utils.zoo: a tiny entry (listed in this module's ``CHECKPOINTS``) trained in
a temporary folder, and the shipped manifest."""

import hashlib
import json
import re
import shutil
import subprocess
import sys

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.data import DataLoader, TensorDataset

from course_utils import zoo
from course_utils.runtime import seed_everything
from course_utils.train import History, evaluate, fit

CPU = torch.device("cpu")
NAME = "test_digits_mlp"


def digits_loaders():
    x, y = load_digits(return_X_y=True)
    data = TensorDataset(torch.tensor(x / 16, dtype=torch.float32), torch.tensor(y))
    train, val = (
        torch.utils.data.Subset(data, range(1500)),
        torch.utils.data.Subset(data, range(1500, 1797)),
    )
    g = torch.Generator().manual_seed(0)  # fixed shuffling: part of the deterministic recipe
    return DataLoader(train, 64, shuffle=True, generator=g), DataLoader(val, 256)


def build():
    # BatchNorm adds an int64 buffer (num_batches_tracked) that must stay an integer on disk
    return nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))


def train(model, *, steps, lr):
    seed_everything(0)
    train_loader, val_loader = digits_loaders()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    fit(
        model,
        train_loader,
        max_steps_per_epoch=steps,
        optimizer=optimizer,
        device=CPU,
        progress=False,
    )
    return {"metric": "accuracy", "value": evaluate(model, val_loader, device=CPU)["accuracy"]}


ENTRY = zoo.Entry(NAME, build, train, {"steps": 10, "lr": 1e-2}, description="test MLP")
#: As in a recipe module: the manifest record names this module, where ``zoo.load`` finds ENTRY.
CHECKPOINTS = (ENTRY,)


@pytest.fixture
def trained(tmp_path):
    """(root, manifest record) of a freshly trained checkpoint."""
    return tmp_path, zoo.train_checkpoint(ENTRY, root=tmp_path)


def trained_in_memory():
    """The same model train_checkpoint saved, re-trained here (training is deterministic)."""
    seed_everything(0)
    model = build()
    with zoo.cpu_threads():  # as train_checkpoint does
        ENTRY.train(model)
    return model.eval()


def test_an_entry_trains_on_the_threads_it_records():
    assert ENTRY.threads == 1 and ENTRY.recipe["threads"] == 1
    two = zoo.Entry("two_threads", build, train, {"steps": 1, "lr": 1e-2}, threads=2)
    assert two.recipe == {"threads": 2, "steps": 1, "lr": 1e-2}
    before = torch.get_num_threads()
    with zoo.cpu_threads(2):
        assert torch.get_num_threads() == 2
        with zoo.cpu_threads():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before


def test_round_trip_gives_the_same_outputs(trained):
    root, _ = trained
    loaded = zoo.load(NAME, root=root, device=CPU)
    assert not loaded.training
    assert all(p.dtype == torch.float32 for p in loaded.parameters())  # computed in float32
    assert loaded[1].num_batches_tracked.dtype == torch.int64
    assert loaded[1].num_batches_tracked.item() == 10
    x = torch.tensor(load_digits().data[:64] / 16, dtype=torch.float32)
    expected = trained_in_memory()(x)
    with torch.no_grad():
        out = loaded(x)
    assert torch.allclose(out, expected, atol=2e-2)  # float16 weights: ~3 significant digits
    assert (out.argmax(1) == expected.argmax(1)).float().mean() > 0.95


def test_manifest_record(trained):
    root, record = trained
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest == {NAME: record}
    assert zoo.info(NAME, root=root) == record
    data = (root / f"{NAME}.safetensors").read_bytes()
    assert record["file"] == f"{NAME}.safetensors"
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["bytes"] == len(data)
    assert (
        record["params"] == sum(p.numel() for p in build().parameters()) == 64 * 32 + 32 + 64 + 330
    )
    assert record["dtype"] == "float16"
    assert record["recipe"] == {"threads": 1, "steps": 10, "lr": 1e-2}
    assert record["module"] == __name__
    assert record["metric"]["name"] == "accuracy" and 0.5 < record["metric"]["value"] <= 1
    assert record["torch"] == torch.__version__
    text = (root / "manifest.json").read_text()
    assert text == json.dumps(manifest, sort_keys=True, indent=2) + "\n"


def test_float16_on_disk_halves_the_file(trained):
    from safetensors.torch import load_file

    root, record = trained
    state = load_file(root / record["file"])
    assert state["0.weight"].dtype == torch.float16
    assert state["1.num_batches_tracked"].dtype == torch.int64


def test_retraining_is_byte_identical(trained, tmp_path_factory):
    root, record = trained
    other = tmp_path_factory.mktemp("again")
    again = zoo.train_checkpoint(ENTRY, root=other)
    assert again["sha256"] == record["sha256"]
    assert (other / record["file"]).read_bytes() == (root / record["file"]).read_bytes()


def test_manifest_keeps_other_records(trained):
    root, record = trained
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["other_model"] = {"file": "other_model.safetensors"}
    (root / "manifest.json").write_text(json.dumps(manifest))
    zoo.train_checkpoint(ENTRY, root=root)
    assert set(json.loads((root / "manifest.json").read_text())) == {NAME, "other_model"}
    assert not list(root.glob("*.tmp"))  # atomic writes leave no temporary files


def test_flipped_byte_is_detected(trained):
    root, record = trained
    path = root / record["file"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one bit pattern in the last weight
    path.write_bytes(bytes(data))
    with pytest.raises(
        zoo.CheckpointError, match=rf"{NAME}\.safetensors is corrupted: sha256"
    ) as err:
        zoo.load(NAME, root=root, device=CPU)
    assert record["sha256"] in str(err.value) and "make checkpoints" in str(err.value)


def test_missing_file_and_missing_record(trained, tmp_path_factory):
    root, record = trained
    (root / record["file"]).unlink()
    with pytest.raises(
        zoo.CheckpointError, match=rf"{NAME}\.safetensors is missing.*make checkpoints"
    ):
        zoo.load(NAME, root=root, device=CPU)
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(zoo.CheckpointError, match=r"manifest.json is missing.*make checkpoints"):
        zoo.load(NAME, root=empty, device=CPU)
    (root / "manifest.json").write_text("{}")
    with pytest.raises(KeyError, match=rf"no checkpoint named '{NAME}'; known: none"):
        zoo.load(NAME, root=root, device=CPU)
    (empty / "manifest.json").write_text("{not json")
    with pytest.raises(zoo.CheckpointError, match="not valid JSON"):
        zoo.info(NAME, root=empty)


def test_a_typo_names_the_closest_checkpoints():
    with pytest.raises(KeyError, match=r"no checkpoint named 'lenet5_digit'; did you mean ") as err:
        zoo.load("lenet5_digit")
    assert "'lenet5_digits'" in str(err.value) and "known: autoencoder_digits," in str(err.value)
    with pytest.raises(KeyError, match=r"no checkpoint named 'nope'; known: autoencoder_digits"):
        zoo.info("nope")


def test_a_typo_fails_at_once_without_importing_a_recipe():
    # in a fresh interpreter, as a learner meets it: the manifest alone says the name is unknown
    code = (
        "import sys, time\n"
        "from course_utils import zoo\n"
        "start = time.perf_counter()\n"
        "try:\n"
        "    zoo.load('lenet5_digit')\n"
        "except KeyError:\n"
        "    print(time.perf_counter() - start)\n"
        "print(sorted(m for m in sys.modules if m.endswith('recipes')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, imported = out.stdout.splitlines()
    assert float(seconds) < 0.1 and imported == "[]"


def test_entries_refuse_bad_names_and_dtypes():
    with pytest.raises(ValueError, match="lower_snake_case"):
        zoo.Entry("Bad Name", build, train)
    with pytest.raises(ValueError, match="dtype must be one of"):
        zoo.Entry("half", build, train, dtype="bfloat16")


def test_float16_overflow_is_refused(tmp_path):
    def train_huge(model):
        with torch.no_grad():
            model.weight.fill_(1e6)  # > 65504, the largest float16
        return {"metric": "none", "value": 0.0}

    huge = zoo.Entry("test_huge", lambda: nn.Linear(2, 2), train_huge)
    with pytest.raises(ValueError, match="weight is not finite as float16"):
        zoo.train_checkpoint(huge, root=tmp_path)


def test_cli_list_and_retrain(tmp_path, capsys, monkeypatch):
    # only the test entry: `main([])` retrains *every* shipped checkpoint
    monkeypatch.setattr(zoo, "REGISTRY", {NAME: ENTRY})
    zoo.main(["--root", str(tmp_path), "--list"])
    assert capsys.readouterr().out.startswith(f"{NAME}: test MLP -- NOT READY")
    zoo.main(["--root", str(tmp_path)])  # no names: retrain all
    out = capsys.readouterr().out
    assert out.startswith(f"{NAME}: accuracy=") and f"{NAME}.safetensors" in out
    assert (tmp_path / f"{NAME}.safetensors").exists()
    zoo.main(["--root", str(tmp_path), "--list", NAME])
    record = zoo.info(NAME, root=tmp_path)
    assert capsys.readouterr().out == (
        f"{NAME}: test MLP -- accuracy={record['metric']['value']:.4f}, "
        f"{record['params']:,} params, {record['bytes'] / 1e6:.2f} MB\n"
    )
    with pytest.raises(SystemExit):
        zoo.main(["--root", str(tmp_path), "nope"])
    assert "unknown checkpoint(s) nope" in capsys.readouterr().err
    monkeypatch.setattr(zoo, "REGISTRY", {})
    zoo.main(["--root", str(tmp_path)])
    assert capsys.readouterr().out == "no checkpoints are known\n"
    (tmp_path / f"{NAME}.safetensors").unlink()
    zoo.main(["--root", str(tmp_path), "--module", __name__, NAME])  # a new recipe module
    assert (tmp_path / f"{NAME}.safetensors").exists()


def test_status_reports_a_missing_file_without_raising(tmp_path):
    line = zoo.status(NAME, root=tmp_path)
    assert line.startswith("NOT READY") and "make checkpoints" in line
    zoo.train_checkpoint(ENTRY, root=tmp_path)
    assert zoo.status(NAME, root=tmp_path).startswith("accuracy=")


def test_the_manifest_is_the_index_and_a_lookup_imports_one_recipe_module():
    # in a fresh interpreter: listing the names and reading records imports no recipe; looking an
    # entry up imports its own module only; importing a recipe module changes nothing in the store
    code = (
        "import sys; from course_utils import zoo\n"
        "loaded = lambda: sorted(m for m in sys.modules if m.endswith('recipes'))\n"
        "names = list(zoo.REGISTRY); zoo.info('detector_digits'); print(len(names), loaded())\n"
        "zoo.REGISTRY['detector_digits']; print(loaded())\n"
        "import course_utils.models.recipes; print(list(zoo.REGISTRY) == names)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    manifest = json.loads((zoo.CHECKPOINT_DIR / zoo.MANIFEST).read_text())
    assert out.stdout.splitlines() == [
        f"{len(manifest)} []",
        "['course_utils.detection.recipes']",
        "True",
    ]


def test_every_recipe_is_the_one_its_manifest_record_was_trained_with():
    manifest = json.loads((zoo.CHECKPOINT_DIR / zoo.MANIFEST).read_text())
    for name, record in manifest.items():
        entry = zoo.REGISTRY[name]
        assert entry.name == name and entry.trainer.__module__ == record["module"]
        assert entry.config == record.get("config", {}), name
        # the digits classifiers' older records do not yet write the builder and the thread count
        older = {"model", "threads"} - set(record["recipe"])
        assert {k: v for k, v in entry.recipe.items() if k not in older} == record["recipe"], name


def test_a_record_of_another_architecture_names_both(tmp_path):
    # a valid hash, but the record (copied from minivgg_digits) is not of the model lenet5_digits
    manifest = json.loads((zoo.CHECKPOINT_DIR / zoo.MANIFEST).read_text())
    manifest["lenet5_digits"] = manifest["minivgg_digits"]
    (tmp_path / zoo.MANIFEST).write_text(json.dumps(manifest))
    shutil.copy(zoo.CHECKPOINT_DIR / "minivgg_digits.safetensors", tmp_path)
    with pytest.raises(
        zoo.CheckpointError,
        match=r"minivgg_digits\.safetensors holds the weights of a MiniVGG \(the weights of "
        r"'minivgg_digits'\), but 'lenet5_digits' builds a LeNet5: its manifest record is another "
        r"model's; `git checkout .*manifest.json` or run `make checkpoints NAMES=lenet5_digits`",
    ):
        zoo.load("lenet5_digits", root=tmp_path, device=CPU)


def test_load_attaches_no_hook():
    # the inputs are checked by the model's own forward (and the functions it is given)
    model = zoo.load("lenet5_digits", device=CPU)
    assert not model._forward_pre_hooks and not model._forward_hooks


def test_load_hands_out_the_configuration_the_model_was_trained_with():
    model = zoo.load("diffusion_digits", device=CPU)
    record = zoo.info("diffusion_digits")
    assert model.config == record["config"]
    assert model.config["noise_schedule"] == record["recipe"]["noise_schedule"]
    assert model.config["noise_schedule"]["beta_schedule"] == "cosine"
    assert model.config["null_class"] == model.null_class == 10
    model.config["null_class"] = 3  # a copy: the manifest record is not changed
    assert zoo.info("diffusion_digits")["config"]["null_class"] == 10
    assert zoo.load("lenet5_digits", device=CPU).config["image_size"] == 32


def test_only_numbers_become_scores(tmp_path):
    # a recipe may return a training History (or anything else) for a lesson's curves
    def train_with_history(model):
        ENTRY.train(model)
        return {"metric": "accuracy", "value": 0.5, "history": History(), "extra": 2, "flag": True}

    entry = zoo.Entry("test_history", build, train_with_history)
    record = zoo.train_checkpoint(entry, root=tmp_path)
    assert record["scores"] == {"extra": 2.0}
    assert record["trained_on"] and record["module"] == __name__


def test_a_wrong_manifest_record_is_named_not_the_intact_file(trained):
    root, record = trained
    manifest = json.loads((root / "manifest.json").read_text())
    manifest[NAME]["sha256"] = "0" * 64
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        zoo.CheckpointError, match=r"manifest.json's sha256 for .* is intact"
    ) as err:
        zoo.load(NAME, root=root, device=CPU)
    assert "git checkout" in str(err.value) and "is corrupted" not in str(err.value)


def test_load_on_a_missing_device_says_what_to_do(trained):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    root, _ = trained
    with pytest.raises(RuntimeError, match=r"device='cuda' but CUDA is not available.*'cpu'"):
        zoo.load(NAME, root=root, device="cuda")


def test_the_fingerprint_is_recorded_repeats_and_catches_a_changed_recipe(trained, monkeypatch):
    root, record = trained
    fp = record["fingerprint"]
    assert fp["steps"] == zoo.FINGERPRINT_STEPS and len(fp["values"]) == 4
    assert zoo.fingerprint(ENTRY) == fp["values"]  # same code, same machine: the same numbers
    assert zoo.drift(NAME, root=root) is None

    def other_lr(model):  # what a changed recipe looks like: one hyper-parameter differs
        seed_everything(0)
        train_loader, _ = digits_loaders()
        fit(
            model,
            train_loader,
            epochs=1,
            max_steps_per_epoch=10,
            optimizer=torch.optim.AdamW(model.parameters(), lr=1.1e-2),
            device=CPU,
            progress=False,
        )
        return {"metric": "accuracy", "value": 0.0}

    changed = zoo.Entry(NAME, build, other_lr)
    monkeypatch.setattr(sys.modules[__name__], "CHECKPOINTS", (changed,))  # as an edited recipe
    message = zoo.drift(NAME, root=root)
    assert message is not None and f"make checkpoints NAMES={NAME}" in message


def test_another_processor_compares_only_the_norms_of_the_first_steps(trained):
    _, record = trained
    values = record["fingerprint"]["values"]
    assert zoo.trained_here(record)
    away = {**record, "cpu_capability": "AVX2" if record["cpu_capability"] != "AVX2" else "AVX512"}
    l2 = values[2]
    signs_flipped = [values[0] + 0.1 * l2, values[1], values[2], values[3] - 0.1 * l2]
    assert not zoo.same_first_steps(signs_flipped, record)  # here: all four numbers must agree
    assert zoo.same_first_steps(signs_flipped, away)  # elsewhere: Adam's sign noise is allowed
    for i in (1, 2):  # ... but not a 1 % change of how far the weights moved
        moved = list(values)
        moved[i] *= 1.01
        assert not zoo.same_first_steps(moved, away)


def test_fingerprints_stop_training_after_their_steps():
    steps = []
    hook = register_optimizer_step_post_hook(lambda *a: steps.append(1))
    try:
        zoo.fingerprint(ENTRY)
    finally:
        hook.remove()
    assert len(steps) == zoo.FINGERPRINT_STEPS  # not the recipe's 10


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", sorted(json.loads((zoo.CHECKPOINT_DIR / zoo.MANIFEST).read_text()))
)
def test_every_shipped_checkpoint_is_what_todays_code_trains(name):
    # the first optimiser steps of each recipe, rerun, against those of the shipped training
    assert zoo.drift(name) is None


def test_make_checkpoints_trains_what_an_entry_needs_first():
    entries = {name: zoo.REGISTRY[name] for name in zoo.REGISTRY}
    order = zoo._in_training_order(sorted(entries), entries)
    assert set(order) == set(entries) and len(order) == len(entries)
    for name in order:
        for needed in entries[name].needs:
            assert needed in entries, f"{name} needs an unknown entry {needed}"
            assert order.index(needed) < order.index(name)
    assert order.index("resnet_small_digits") < order.index("autoencoder_digits")
    only = ["instance_digit_scenes"]
    assert zoo._in_training_order(only, entries) == only


@pytest.mark.slow
def test_a_cheap_entry_retrained_in_full_matches_its_shipped_file(tmp_path):
    # LeNet-5 trains in seconds: retrain it from its recipe, exactly as `make checkpoints` does
    shipped = zoo.info("lenet5_digits")
    again = zoo.train_checkpoint(zoo.REGISTRY["lenet5_digits"], root=tmp_path)
    if zoo.trained_here(shipped):
        assert again["sha256"] == shipped["sha256"]  # same processor and torch: the same bytes
    else:  # another processor rounds differently: the same metric within a test image or two
        assert again["metric"]["value"] == pytest.approx(shipped["metric"]["value"], abs=2.5 / 450)
    assert zoo.same_first_steps(again["fingerprint"]["values"], shipped)


def test_the_checkpoint_table_quotes_the_manifest():
    # data/checkpoints/README.md lists each entry with its metric: it must be the recorded one
    table = (zoo.CHECKPOINT_DIR / "README.md").read_text()
    rows = {line.split("`")[1]: line for line in table.splitlines() if line.startswith("| `")}
    manifest = json.loads((zoo.CHECKPOINT_DIR / zoo.MANIFEST).read_text())
    assert set(rows) == set(manifest)
    for name, record in manifest.items():
        values = [record["metric"]["value"], *record.get("scores", {}).values()]
        quoted = [float(x) for x in re.findall(r"(?<![\d.])\d\.\d{3,5}(?!\d)", rows[name])]
        assert quoted, f"{name}: no metric quoted"
        for number in quoted:  # every number quoted is a recorded one, rounded as written
            decimals = len(f"{number}".split(".")[1])
            assert any(abs(round(v, 4) - number) <= 0.6 * 10**-decimals for v in values), (
                f"{name}: {number} is not in its manifest record {values}"
            )
