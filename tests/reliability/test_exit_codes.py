"""Promise 4: exit codes say what happened (0 ok, 1 a check failed, 2 bad input, 3 internal error,
130 interrupted) and an error is one line on stderr saying what is wrong and what to do."""

from __future__ import annotations

import json

import pytest
from reliability_kit import MODEL, record_run, transfer_args

from zoo.cli.permgraph import main as permgraph
from zoo.cli.transfer import main as transfer
from zoo.cli.zoo import main as zoo


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def train_args(out, *extra: str) -> list[str]:
    return ["train", "--model", MODEL, "--data", "synthetic", "--epochs", "2", "--lr", "0.1", "--seed", "0",
            "--out", str(out), "--no-progress", *extra]  # fmt: skip


@pytest.mark.parametrize(
    "argv, message",
    [
        (["inspect", MODEL, "--input=-1,784"], "give positive sizes"),
        (["inspect", MODEL, "--input", "2,32:complex"], "unknown dtype"),
        (["verify", MODEL, "--trials", "0"], "zero trials would check nothing"),
        (["verify", MODEL, "--trials", "-1"], "--trials must be >= 1"),
        (["inspect", "no_such_module_xyz:net"], "there is no Python module 'no_such_module_xyz'"),
    ],
)
def test_permgraph_bad_input_exits_2(argv, message, capsys):
    assert permgraph(argv) == 2
    assert message in one_line(capsys)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lr", "-1"], "lr must be > 0"),
        (["--lr", "nan"], "lr must be a finite number"),
        (["--epochs", "0"], "epochs must be an int >= 1"),
        (["--wd", "inf"], "weight_decay must be a finite number"),
    ],
)
def test_zoo_train_refuses_numbers_it_cannot_train_with(tmp_path, extra, message, capsys):
    assert zoo(train_args(tmp_path / "r", *extra)) == 2
    assert message in one_line(capsys)
    assert not (tmp_path / "r").exists()


def test_an_unwritable_out_exits_2_naming_the_path(capsys):
    assert zoo(train_args("/proc/permgraph-no-such-dir/run")) == 2
    assert "cannot access /proc/permgraph-no-such-dir" in one_line(capsys)


def test_a_damaged_training_resume_state_is_named(tmp_path, capsys):
    out = record_run(tmp_path / "r", 0, stop_after_epochs=1)  # the recipe of train_args, interrupted
    (out / "train_state.json").write_text("{not json")
    assert zoo(train_args(out)) == 2
    assert "the resume state of" in (err := one_line(capsys)) and "train_state.json" in err


def test_damaged_transfer_state_and_results_are_named(work, capsys):
    out = work / "out"
    assert transfer(transfer_args(work, out)) == 0
    capsys.readouterr()
    perm = out / ".state" / "fgmt" / "perm_0001.safetensors"
    perm.write_bytes(perm.read_bytes()[:40])
    assert transfer(transfer_args(work, out)) == 2
    assert "perm_0001.safetensors is damaged" in one_line(capsys)
    (out / ".state" / "fgmt" / "state.json").write_text("[1, 2")
    assert transfer(transfer_args(work, out)) == 2
    assert "state.json is not a readable transfer state" in one_line(capsys)
    results = json.loads((out / "results.json").read_text())
    results["methods"]["fgmt"]["val_acc"] = "x"
    (out / "results.json").write_text(json.dumps(results))
    assert transfer(["finetune", "--from", str(out), "--no-progress"]) == 2
    assert "results.json: the entry of 'fgmt' is damaged" in one_line(capsys)


def test_ctrl_c_in_transfer_is_one_line_and_exit_130(work, capsys, monkeypatch):
    from transfer import loop

    def interrupted(self, record, callback):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop.Loop, "_steps", interrupted)
    assert transfer(transfer_args(work, work / "out")) == 130
    assert "transfer: interrupted; run the same command again to resume" in one_line(capsys)


def test_an_internal_error_is_one_line_with_exit_3_and_the_traceback_under_debug(work, capsys, monkeypatch):
    from transfer import loop

    def broken(self, record, callback):
        raise RuntimeError("a bug")

    monkeypatch.setattr(loop.Loop, "_steps", broken)
    assert transfer(transfer_args(work, work / "out")) == 3
    assert "internal error: RuntimeError: a bug (run again with --debug" in one_line(capsys)
    assert transfer(["--debug", *transfer_args(work, work / "out")]) == 3
    assert "Traceback" in capsys.readouterr().err


def test_console_entry_points_keep_exit_codes_and_output_with_the_fast_exit():
    """The installed commands run ``console`` (main, then ``leave``: output flushed, atexit handlers
    run, no teardown): the exit code and the output must be main's to the last byte, and one-line
    errors stay one line."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    scripts = (root / "pyproject.toml").read_text().split("[project.scripts]")[1].split("\n[")[0]
    targets = [line.split("=")[1].strip() for line in scripts.strip().splitlines()]
    assert len(targets) == 3 and all(t.endswith(':console"') for t in targets)
    cmd = [sys.executable, "-m", "zoo.cli.transfer", "run", "--source", str(root / "no-such-run"), "--target-init", "1",
           "--T", "2", "--method", "fgmt", "--out", str(root / "no-such-out")]  # fmt: skip
    bad = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "does not exist" in bad.stderr
    assert not (root / "no-such-out").exists()


LEAVING = """
import atexit, os, sys, threading, time
from pathlib import Path
from zoo.cli.common import leave

out = Path(sys.argv[1])
class Finalised:
    def __del__(self, write=os.write):  # at module teardown: print may be gone by then
        write(1, b"teardown ran")
sys.modules["kept_till_teardown"] = Finalised()  # no cycle: finalised when the teardown clears sys.modules
atexit.register(lambda: (out / "atexit").write_text("ran"))
if "thread" in sys.argv:
    threading.Thread(target=lambda: (time.sleep(0.3), (out / "thread").write_text("done"))).start()
if "profiled" in sys.argv:
    sys.setprofile(lambda *a: None)
print("x" * 70000, end="")
print("to stderr", file=sys.stderr, end="")
leave(3)
print("after leave")
"""


@pytest.mark.parametrize("case", ["plain", "thread", "profiled"])
def test_leave_exits_with_the_code_after_the_output_and_the_atexit_handlers(tmp_path, case):
    """``leave`` skips the teardown (an object's finaliser does not run) only where nothing needs it:
    a running non-daemon thread is waited for and a profiler gets its teardown (finaliser runs)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", LEAVING, str(tmp_path), case], capture_output=True, text=True,
                          cwd=root)  # fmt: skip
    assert done.returncode == 3 and done.stderr == "to stderr"
    assert done.stdout.startswith("x" * 70000) and "after leave" not in done.stdout
    assert (tmp_path / "atexit").read_text() == "ran"
    assert ("teardown ran" in done.stdout) == (case != "plain")
    assert (tmp_path / "thread").exists() == (case == "thread")


def test_progress_bars_only_on_a_terminal_so_a_log_file_gets_no_carriage_returns(tmp_path):
    """``transfer run`` without ``--no-progress``: a bar on a terminal (a pseudo-terminal here), none
    into a pipe or a file, where every update would be a carriage return."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    record_run(tmp_path / "s1", 0)
    record_run(tmp_path / "s2", 1)
    args = [a for a in transfer_args(tmp_path, tmp_path / "o", "--method", "naive") if a != "--no-progress"]
    cmd = [sys.executable, "-m", "zoo.cli.transfer", *args]
    piped = subprocess.run(cmd, capture_output=True, cwd=root)  # bytes: text mode would turn "\r" into "\n"
    assert piped.returncode == 0 and b"\r" not in piped.stderr and b"naive" in piped.stdout
    assert b"it/s" not in piped.stderr
    lead, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a new pty is 0 columns wide
    args[args.index("--out") + 1] = str(tmp_path / "tty")
    child = subprocess.Popen([sys.executable, "-m", "zoo.cli.transfer", *args], stdout=subprocess.DEVNULL,
                             stderr=follower, cwd=root)  # fmt: skip
    os.close(follower)
    chunks = []
    while True:  # read while it runs (a full terminal buffer would block it); EIO once it has closed its end
        try:
            chunk = os.read(lead, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(lead)
    seen = b"".join(chunks).decode(errors="replace")
    assert child.wait() == 0 and "\r" in seen and "naive" in seen
