"""The transfer's cost (transfer cost issue): a time per phase in results.json, the trajectory written
only when asked, the spec kept in OUT/.state/spec.json and the user cache and never traced twice,
and warm-started solves that a resumed run picks up where the interrupted one left them."""

from __future__ import annotations

import json

import pytest
import torch
from test_methods import MLP, record, run, run_interrupted, tiny_data

import permgraph
import transfer.lap as lap
from transfer.engine import PHASES, TransferEngine, process_age
from transfer.files import FolderError
from transfer.options import TransferOptions
from transfer.trajectory import Trajectory
from zoo.models import build


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PERMGRAPH_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def runs(tmp_path):
    data = tiny_data((6,), 3)
    return data, record(tmp_path / "src", MLP, 0, data), record(tmp_path / "tgt", MLP, 1, data).init()


def test_results_list_every_phase_and_they_add_up_to_the_wall_time(tmp_path, runs):
    data, src, init = runs
    engine = TransferEngine(build(MLP), data, TransferOptions(T=2, grad_batches=2, batch_size=16, progress=False))
    engine.note_phase("data", 0.5)
    res = engine.run("fgmt", src, init, out=tmp_path / "out")
    phases = res["phases"]
    assert list(phases) == [*PHASES, "other"] and all(v >= 0 for v in phases.values())
    assert phases["data"] == 0.5 and phases["gradients"] > 0 and phases["evaluation"] > 0
    assert sum(phases.values()) == pytest.approx(res["wall_seconds"], abs=0.02)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())["methods"]["fgmt"]
    assert saved["phases"] == phases and saved["trajectory"] is True
    second = engine.run("gmt", src, init, out=tmp_path / "out")
    assert second["phases"]["data"] == 0.0, "what preceded the first run is reported once"
    with pytest.raises(ValueError, match="unknown phase"):
        engine.note_phase("lunch", 1.0)


def test_process_age_is_the_time_since_the_process_started():
    age = process_age()
    assert age is None or 0 < age < 24 * 3600


def test_no_trajectory_writes_the_results_and_the_resume_state_only(tmp_path, runs):
    data, src, init = runs
    full = run("fgmt", src, init, data, tmp_path / "full")
    res = run("fgmt", src, init, data, tmp_path / "lean", write_trajectory=False)
    assert res["val_acc"] == full["val_acc"] and res["trajectory"] is False
    assert not (tmp_path / "lean" / "fgmt").exists()
    assert (tmp_path / "lean" / "results.json").exists() and (tmp_path / "lean" / ".state" / "fgmt").is_dir()
    # the option is how, not what: the same folder takes a run that writes the trajectory
    again = run("fgmt", src, init, data, tmp_path / "lean")
    assert again["val_acc"] == full["val_acc"] and Trajectory(tmp_path / "lean" / "fgmt").final()
    assert "write_trajectory" not in json.loads((tmp_path / "lean" / "results.json").read_text())["setting"]


def test_a_foreign_method_folder_is_refused_and_left_alone(tmp_path, runs):
    """A method-named folder holding the user's own file is not ours: refused, even with --no-trajectory,
    and nothing of it is touched or added beside it."""
    data, src, init = runs
    (tmp_path / "out" / "fgmt").mkdir(parents=True)
    (tmp_path / "out" / "fgmt" / "notes.txt").write_text("mine")
    with pytest.raises(FolderError, match="did not write"):
        run("fgmt", src, init, data, tmp_path / "out", write_trajectory=False)
    assert (tmp_path / "out" / "fgmt" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fgmt"]


def test_the_spec_is_traced_once_then_read_back(tmp_path, runs, monkeypatch):
    data, src, init = runs
    calls = []
    real = permgraph.infer
    monkeypatch.setattr(permgraph, "infer", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = run("fgmt", src, init, data, tmp_path / "a")
    assert len(calls) == 1 and (tmp_path / "a" / ".state" / "spec.json").exists()
    second = run("gmt", src, init, data, tmp_path / "b")  # another folder, another engine: the user cache
    assert len(calls) == 1 and (tmp_path / "b" / ".state" / "spec.json").exists()
    assert second["val_acc"][0] == first["val_acc"][0]
    # the user cache gone and the folder's copy damaged: traced again, and both rewritten
    monkeypatch.setenv("PERMGRAPH_CACHE", "off")
    (tmp_path / "b" / ".state" / "spec.json").write_text('{"format": "permgraph-spec-cache", "spec": 1}')
    again = run("gmt", src, init, data, tmp_path / "b")
    assert len(calls) == 2 and again["val_acc"] == second["val_acc"]
    assert json.loads((tmp_path / "b" / ".state" / "spec.json").read_text())["spec"]["groups"]


def test_a_spec_given_by_the_caller_is_never_cached(tmp_path, runs):
    data, src, init = runs
    spec = permgraph.infer(build(MLP), (data.train[0][:2],))
    run("fgmt", src, init, data, tmp_path / "out", spec=spec)
    assert not (tmp_path / "out" / ".state" / "spec.json").exists()
    assert not (tmp_path / "cache").exists()


def test_a_resumed_run_restores_the_warm_starts(tmp_path, runs, monkeypatch):
    """Every LAP through the auction's route (as for mlp2's 4096 units), so warm starts are in play."""
    monkeypatch.setattr(lap, "HAVE_LAPX", False)
    monkeypatch.setattr(lap, "AUCTION_MIN_SIZE", 4)
    data, src, init = runs
    full = run("fgmt", src, init, data, tmp_path / "full", T=3)
    assert sorted(p.name for p in (tmp_path / "full" / ".state" / "fgmt").glob("warm_*")) == [
        f"warm_{t:04d}.safetensors" for t in (1, 2, 3)
    ]

    run_interrupted("fgmt", src, init, data, tmp_path / "cut", T=3)
    starts, steps = [], []
    real = lap.structured_solve  # where these matrices go first (the certified structured solve)
    monkeypatch.setattr(lap, "structured_solve", lambda a, prices=None, start=None, **k: starts.append((prices, start))
                        or real(a, prices, start, **k))  # fmt: skip
    resumed = run("fgmt", src, init, data, tmp_path / "cut", T=3, callback=lambda t, r: steps.append(t))
    assert steps == [3] and resumed["val_acc"] == full["val_acc"]
    prices, start = starts[0] if starts else (None, None)
    assert prices is not None and len(prices) == len(start) == 12, "step 3 starts from step 2's prices and assignment"
    a, b = Trajectory(tmp_path / "full" / "fgmt").final(), Trajectory(tmp_path / "cut" / "fgmt").final()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a damaged warm file is only a lost start: the run goes on
    (tmp_path / "cut" / ".state" / "fgmt" / "warm_0002.safetensors").write_bytes(b"junk")
    from transfer.phases import TimedStore

    assert TimedStore(tmp_path / "cut" / ".state" / "fgmt").load_warm(2) == {}
    loaded = TimedStore(tmp_path / "full" / ".state" / "fgmt").load_warm(3)
    assert set(loaded) == {"fc1.out"} and loaded["fc1.out"].fits(12)


MIXING = {"act": torch.relu}  # what Helped's forward calls: changing it changes no key, only the function


class Helped(torch.nn.Module):
    """A model whose forward calls a function the spec key cannot see (it is not the class's file)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Linear(6, 8), torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.b(MIXING["act"](self.a(x)))


def test_a_cached_spec_that_no_longer_verifies_is_inferred_again(monkeypatch):
    data = tiny_data((6,), 3)
    options = TransferOptions(T=2, grad_batches=2, batch_size=16, progress=False)
    free = TransferEngine(Helped(), data, options).spec
    assert free.free_groups, "relu between the layers: the hidden units are free"
    monkeypatch.setitem(MIXING, "act", lambda h: torch.cumsum(h, dim=-1))  # order matters now
    again = TransferEngine(Helped(), data, options).spec
    assert not again.free_groups, "the cached spec would permute units the forward now mixes"
    assert permgraph.verify(Helped(), again, (torch.randn(2, 6),)).ok


def test_several_methods_read_each_input_checkpoint_once(tmp_path, monkeypatch):
    """An engine running methods on the same runs reads (and checks, hashes) θ₁⁰, θ₁ᵀ and θ₂⁰ once; a run
    that moved on (another content hash) is read again."""
    data = tiny_data((6,), 3)
    src, tgt = record(tmp_path / "src", MLP, 0, data), record(tmp_path / "tgt", MLP, 1, data)
    reads = []
    load = Trajectory.load
    monkeypatch.setattr(Trajectory, "load", lambda self, i: reads.append((self.path.name, i)) or load(self, i))
    engine = TransferEngine(build(MLP), data, TransferOptions(T=2, grad_batches=2, batch_size=16, progress=False))
    first = engine.run("naive", src, tgt, out=tmp_path / "out")
    assert sorted(reads) == [("src", 0), ("src", len(src) - 1), ("tgt", 0)]  # naive on the linear source
    reads.clear()
    again = engine.run("naive", src, tgt, out=tmp_path / "out2")
    assert reads == [] and again["val_acc"] == first["val_acc"]
    other = record(tmp_path / "tgt2", MLP, 2, data)
    engine.run("naive", src, other, out=tmp_path / "out3")
    assert reads == [("tgt2", 0)]
