"""The training loop records a trajectory, and an interrupted run resumes to the same bits."""

import pytest
import torch

from transfer.evaluation import evaluate
from transfer.options import OptionsError
from transfer.trajectory import Trajectory
from zoo import ZooError, build
from zoo.data import CropFlip, DataSplits, load
from zoo.train import TRAIN_STATE_FILES, TrainControl, TrainRecipe, lr_at
from zoo.train import train as train_run

MODEL = "zoo:mlp2?width=16&in_features=32&num_classes=4"
TRAIN_STATE = TRAIN_STATE_FILES[0]


def train(model, data, *, out, epochs, seed=5, stop_after_epochs=None, stop_after_steps=None, init=None, **recipe):
    """The loop with this file's fast defaults (lr 0.05, batch 64, seed 5, no progress bar)."""
    recipe = TrainRecipe(epochs=epochs, **{"lr": 0.05, "batch_size": 64, **recipe})
    control = TrainControl(progress=False, stop_after_epochs=stop_after_epochs, stop_after_steps=stop_after_steps)
    return train_run(model, data, recipe, seed=seed, out=out, init=init, control=control)


def _same(a: Trajectory, b: Trajectory) -> bool:
    if a.steps != b.steps or [c["metrics"] for c in a.checkpoints] != [c["metrics"] for c in b.checkpoints]:
        return False
    return all(all(torch.equal(sa[k], sb[k]) for k in sa) for sa, sb in zip(a, b, strict=True))


def test_a_tiny_run_records_init_and_one_checkpoint_per_epoch(tmp_path):
    traj = train(MODEL, "synthetic", epochs=2, out=tmp_path / "run")
    assert traj.complete and traj.model == MODEL and traj.seed == 5 and traj.data == "synthetic"
    assert traj.steps == [0, 8, 16] and [c["name"] for c in traj.checkpoints] == [
        "init",
        "epoch_1",
        "epoch_2",
    ]
    assert traj.epochs == [0.0, 1.0, 2.0]
    assert set(traj.checkpoints[1]["metrics"]) == {"val_loss", "val_acc", "lr", "train_loss"}
    assert traj.metrics("val_acc")[-1] > traj.metrics("val_acc")[0]
    torch.manual_seed(5)
    init = build(MODEL).state_dict()
    assert all(torch.equal(init[k], traj.init()[k]) for k in init)  # θ⁰ is a function of the seed
    assert not (tmp_path / "run" / TRAIN_STATE).exists()
    model = build(MODEL)
    model.load_state_dict(traj.final())
    _, acc = evaluate(model, *load("synthetic").val)
    assert acc == pytest.approx(traj.metrics("val_acc")[-1])


@pytest.mark.parametrize(
    "options, stops",
    [
        (dict(optimizer="sgd", schedule="cosine", weight_decay=1e-3), [dict(stop_after_epochs=1)]),
        (dict(optimizer="adamw", checkpoint_every=3), [dict(stop_after_steps=7), dict(stop_after_steps=13)]),
    ],
)
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, options, stops):
    whole = train(MODEL, "synthetic", epochs=3, out=tmp_path / "whole", **options)
    for stop in stops:
        part = train(MODEL, "synthetic", epochs=3, out=tmp_path / "part", **options, **stop)
        assert not part.complete and (tmp_path / "part" / TRAIN_STATE).exists()
    resumed = train(MODEL, "synthetic", epochs=3, out=tmp_path / "part", **options)
    assert resumed.complete and _same(whole, resumed)


def test_augmented_data_resumes_bit_for_bit(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 3, 8, 8, generator=g), torch.randint(0, 3, (96,), generator=g)
    data = DataSplits(
        "tiny-images", (x, y), (x[:32], y[:32]), (x[:32], y[:32]), 3, (3, 8, 8), augment=CropFlip()
    )
    model = "zoo:mlp2?width=8&in_features=192&num_classes=3"
    whole = train(model, data, epochs=2, out=tmp_path / "w")
    train(model, data, epochs=2, out=tmp_path / "p", stop_after_steps=3)
    assert _same(whole, train(model, data, epochs=2, out=tmp_path / "p"))


def test_same_out_with_another_config_is_refused(tmp_path):
    train(MODEL, "synthetic", epochs=1, out=tmp_path / "run")
    with pytest.raises(ZooError, match="another configuration .*'epochs': \\(1, 2\\)"):
        train(MODEL, "synthetic", epochs=2, out=tmp_path / "run")


def test_cosine_lr_decays_to_zero():
    assert lr_at(0, 10, 0.1, "cosine") == pytest.approx(0.1)
    assert lr_at(5, 10, 0.1, "cosine") == pytest.approx(0.05)
    assert lr_at(10, 10, 0.1, "cosine") == pytest.approx(0.0)
    with pytest.raises(ZooError, match="valid: constant, cosine"):
        lr_at(0, 10, 0.1, "step")


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(lr=float("nan")), "lr must be a finite number"),
        (dict(lr=-1.0), "lr must be > 0"),
        (dict(epochs=0), "epochs must be an int >= 1"),
        (dict(optimizer="adam"), "unknown optimizer 'adam'"),
        (dict(weight_decay=float("inf")), "weight_decay must be a finite number"),
        (dict(checkpoint_every=0), "checkpoint_every"),
    ],
)
def test_a_recipe_refuses_values_it_cannot_train_with(bad, message):
    with pytest.raises(OptionsError, match=message):
        TrainRecipe(**{"epochs": 1, "lr": 0.1, **bad})


def test_a_recipe_table_with_a_misspelled_key_fails_naming_it():
    with pytest.raises(OptionsError, match="unknown key 'learning_rate' in the \\[train\\] table"):
        TrainRecipe.from_mapping({"epochs": 1, "learning_rate": 0.1}, "the [train] table")


def test_fine_tuning_is_the_same_loop_started_from_a_given_state(tmp_path):
    """Same seed and recipe: from a state it is the run from scratch with θ⁰ replaced."""
    scratch = train(MODEL, "synthetic", epochs=1, out=tmp_path / "scratch")
    start = scratch.final()
    tuned = train(MODEL, "synthetic", epochs=2, out=tmp_path / "tuned", init=start)
    assert tuned.checkpoints[0]["name"] == "start" and tuned.config["init_sha"]
    assert all(torch.equal(tuned.init()[k], start[k]) for k in start)
    assert tuned.metrics("val_acc")[0] == pytest.approx(scratch.metrics("val_acc")[-1])
    with pytest.raises(ZooError, match="another configuration"):  # another start is another run
        train(MODEL, "synthetic", epochs=2, out=tmp_path / "tuned", init=scratch.init())
