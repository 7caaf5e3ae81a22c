"""Promise 3: never stale numbers, never two writers. Inputs are identified by content (checkpoint
hashes), an unfinished source is refused unless asked for, and one process at a time holds an output
folder: a second writer exits 2 at once, naming the holder. Ctrl-C is one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from reliability_kit import MODEL, record_run, transfer_args

from zoo.cli.transfer import main as transfer

ROOT = Path(__file__).resolve().parents[2]


def test_an_unfinished_source_is_refused_then_never_mistaken_for_the_finished_one(tmp_path, capsys):
    record_run(tmp_path / "s1", 1, stop_after_epochs=1)
    record_run(tmp_path / "s2", 2)
    out = tmp_path / "out"
    assert transfer(transfer_args(tmp_path, out)) == 2
    assert "is incomplete" in capsys.readouterr().err
    assert transfer(transfer_args(tmp_path, out, "--allow-incomplete")) == 0
    first = json.loads((out / "results.json").read_text())
    record_run(tmp_path / "s1", 1)  # the source run is finished: another trajectory at the same path
    assert transfer(transfer_args(tmp_path, out, "--allow-incomplete")) == 2
    assert "another setting" in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text()) == first, "old numbers neither printed nor replaced"


def _zoo(out: Path, epochs: int) -> list[str]:
    return [sys.executable, "-m", "zoo", "train", "--model", MODEL, "--data", "synthetic", "--epochs", str(epochs),
            "--lr", "0.01", "--seed", "0", "--checkpoint-every", "1000000", "--out", str(out), "--no-progress"]  # fmt: skip


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_holder(lock: Path, proc: subprocess.Popen, seconds: float = 300.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if lock.exists() and lock.read_text().strip():
            return lock.read_text()
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the first writer never took the lock")


def test_a_second_writer_exits_2_at_once_naming_the_holder_and_ctrl_c_is_one_line(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # SIGINT as a terminal delivers it: a suite started in the background (`make test &`) passes its
    # children an ignored SIGINT, which Python then leaves ignored
    first = subprocess.Popen(_zoo(out, 1_000_000), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, preexec_fn=_default_sigint)  # fmt: skip
    try:
        holder = _wait_for_holder(out / ".lock", first)
        assert f"pid {first.pid}" in holder
        # refused before its work: a second writer that trained (a million epochs) would never return, and
        # the timeout would raise; no bound on the start-up itself, which a loaded machine stretches
        second = subprocess.run(_zoo(out, 1_000_000), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr
        assert f"is in use by pid {first.pid}" in second.stderr and second.stderr.count("\n") == 1
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130
    assert err.strip().splitlines() == ["zoo: interrupted; re-run the same command to resume from the last checkpoint"]
    assert "Traceback" not in err
