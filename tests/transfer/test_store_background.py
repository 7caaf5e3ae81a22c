"""The resume files are written in the background, yet in the order resuming relies on: ``state.json`` is
replaced only after every file it may name is durable, a load reads what was saved, and a failed write is
raised in the caller's thread."""

from __future__ import annotations

import json
import threading
import time

import pytest
import torch
from safetensors.torch import load_file

import transfer.store
from transfer.files import atomic_write_bytes
from transfer.phases import PhaseClock, TimedStore
from transfer.records import RunRecord
from transfer.store import RunStore


def pair(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(64, 32, generator=g)}, {"w": torch.randn(64, 32, generator=g)}


def slow_writes(monkeypatch: pytest.MonkeyPatch, seconds: float) -> list[str]:
    """Make every background write take ``seconds``; returns the names written, in order, when done."""
    written: list[str] = []

    def slow(path, data) -> None:
        time.sleep(seconds)
        atomic_write_bytes(path, data)
        written.append(path.name)

    monkeypatch.setattr(transfer.store, "atomic_write_bytes", slow)
    return written


def test_commit_waits_for_the_pair_file(tmp_path, monkeypatch) -> None:
    written = slow_writes(monkeypatch, 0.2)
    store = RunStore(tmp_path / "fgmt")
    target, source = pair(0)
    store.save_pair(1, target, source)
    assert written == []  # the write runs in the background
    store.commit(RunRecord({"method": "fgmt"}))
    assert written == ["pair_0001.safetensors"]  # done before state.json was replaced
    assert (tmp_path / "fgmt" / "state.json").exists()
    flat = load_file(str(tmp_path / "fgmt" / "pair_0001.safetensors"))
    assert torch.equal(flat["target/w"], target["w"]) and torch.equal(flat["source/w"], source["w"])
    store.close()


def test_the_saved_bytes_are_fixed_at_save(tmp_path, monkeypatch) -> None:
    slow_writes(monkeypatch, 0.2)
    store = RunStore(tmp_path / "fgmt")
    target, source = pair(1)
    kept = target["w"].clone()
    store.save_pair(1, target, source)
    target["w"].zero_()  # the caller reuses its tensor while the write is pending
    assert torch.equal(store.load_pair(1)[0]["w"], kept)
    store.close()


def test_load_after_save_returns_the_saved_tensors(tmp_path, monkeypatch) -> None:
    slow_writes(monkeypatch, 0.1)
    store = RunStore(tmp_path / "fgmt")
    target, source = pair(2)
    store.save_pair(3, target, source)
    store.save_perm(3, {"P": torch.tensor([2, 0, 1])})
    store.save_bn(3, {"bn.running_mean": torch.arange(4.0)})
    got_target, got_source = store.load_pair(3)
    assert torch.equal(got_target["w"], target["w"]) and torch.equal(got_source["w"], source["w"])
    assert torch.equal(store.load_perm(3)["P"], torch.tensor([2, 0, 1]))
    assert torch.equal(store.load_bn(3)["bn.running_mean"], torch.arange(4.0))
    store.close()


def failing_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(path, data) -> None:
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(transfer.store, "atomic_write_bytes", full)


def test_a_failed_write_is_raised_by_the_next_commit(tmp_path, monkeypatch) -> None:
    failing_writes(monkeypatch)
    store = RunStore(tmp_path / "fgmt")
    store.save_pair(1, *pair(3))
    with pytest.raises(OSError, match="No space left on device") as e:
        store.commit(RunRecord({"method": "fgmt"}))
    assert "pair_0001.safetensors" in " ".join(e.value.__notes__) and "background" in " ".join(e.value.__notes__)
    assert not (tmp_path / "fgmt" / "state.json").exists()  # the step was not committed
    store.close()  # raised once, then the store is clean


def test_a_failed_write_is_raised_by_the_next_save_or_close(tmp_path, monkeypatch) -> None:
    failed = threading.Event()

    def full(path, data) -> None:
        try:
            raise OSError(28, "No space left on device", str(path))
        finally:
            failed.set()

    monkeypatch.setattr(transfer.store, "atomic_write_bytes", full)
    store = RunStore(tmp_path / "fgmt")
    store.save_pair(1, *pair(4))
    assert failed.wait(10)
    time.sleep(0.1)  # the future records the failure once the write returns
    with pytest.raises(OSError, match="No space left"):
        store.save_perm(1, {"P": torch.tensor([0, 1])})
    store.flush()  # raised once: the perm write above was not queued, nothing else failed
    other = RunStore(tmp_path / "other")
    other.save_pair(1, *pair(5))
    with pytest.raises(OSError, match="No space left"):
        other.close()


def test_discard_waits_then_removes(tmp_path, monkeypatch) -> None:
    slow_writes(monkeypatch, 0.2)
    store = RunStore(tmp_path / "fgmt")
    store.save_pair(1, *pair(6))
    store.discard()
    assert not (tmp_path / "fgmt").exists()  # no pending write recreated it afterwards
    store.close()


def test_abort_notes_a_failed_write_on_the_failure_in_flight(tmp_path, monkeypatch) -> None:
    failing_writes(monkeypatch)
    store = RunStore(tmp_path / "fgmt")
    store.save_pair(1, *pair(7))
    cause = ValueError("the step failed")
    store.abort(cause)
    assert any("No space left" in note for note in cause.__notes__)


def test_timed_store_counts_the_wait_at_commit(tmp_path, monkeypatch) -> None:
    slow_writes(monkeypatch, 0.3)
    clock = PhaseClock()
    store = TimedStore(tmp_path / "fgmt", clock)
    with clock.steps():
        store.save_pair(1, *pair(8))
        saved = clock.seconds["state"]
        store.commit(RunRecord({"method": "fgmt"}))
    assert saved < 0.25 <= clock.seconds["state"]
    assert json.loads((tmp_path / "fgmt" / "state.json").read_text())
    store.close()
