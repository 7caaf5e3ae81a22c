"""Your own Hugging Face model and dict datasets through every command, as a user runs them.

The user writes two modules of their own (a tiny ``BertForSequenceClassification`` from a config, and
a factory of ``(train, val)`` datasets whose items are dicts with ``input_ids``, ``attention_mask``
and ``labels``), trains two runs with ``transformers.Trainer`` + ``TrajectoryCallback``, then calls
``transfer run``, ``transfer diagnose``, ``transfer match`` and ``transfer finetune`` from the command
line with ``--model mymodels:tiny_bert --data mydata:tok_splits``. The same route with a plain module
whose forward takes the dict's keys goes through ``zoo train`` as well.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from transfer.trajectory import Trajectory

pytest.importorskip("transformers")

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide.md"
SECTION = "### Hugging Face models, dict datasets and the `Trainer`"


def guide_section() -> str:
    return GUIDE.read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]


def guide_files() -> dict[str, str]:
    """The user's files as the guide shows them: python blocks whose first line is ``# NAME.py``."""
    blocks = re.findall(r"```python\n# (\w+\.py)\n(.*?)```", guide_section(), flags=re.S)
    return dict(blocks)


def guide_commands() -> list[list[str]]:
    """The command lines of the guide's shell blocks, in order, as argument lists."""
    lines = [ln for block in re.findall(r"```bash\n(.*?)```", guide_section(), flags=re.S) for ln in block.splitlines()]
    return [shlex.split(ln) for ln in lines if ln.strip()]


@pytest.fixture()
def user(tmp_path, monkeypatch):
    """The user's folder with their two modules, on the path of this process and of the commands."""
    files = guide_files()
    assert {"mymodels.py", "mydata.py", "train_bert.py"} <= set(files), sorted(files)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for name in ("mymodels", "mydata"):
        sys.modules.pop(name, None)
    return tmp_path


def cli(folder: Path, *argv: str) -> subprocess.CompletedProcess:
    """A command line as the user types it, in their folder, with it on PYTHONPATH."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(root)]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", *argv], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}"
    return done


def test_the_guides_bert_route_runs_from_the_command_line_as_written(user):
    """Trainer + TrajectoryCallback, then transfer run, diagnose, match and finetune with the user's
    --model / --data: every line of the guide's first shell block, as it stands."""
    commands = guide_commands()
    assert commands[0] == ["python", "train_bert.py"]
    exec(compile((user / "train_bert.py").read_text(), "train_bert.py", "exec"), {"__name__": "__main__"})
    s1 = Trajectory(user / "runs" / "bert" / "s1")
    assert s1.complete and s1.steps == [0, 4, 8] and "eval_loss" in s1.checkpoints[-1]["metrics"]
    bert = [c for c in commands[1:] if c[0] == "transfer" and "mymodels:tiny_bert" in c]
    assert [c[1] for c in bert] == ["run", "diagnose", "match", "finetune"]
    for argv in bert:
        cli(user, "zoo.cli.transfer", *argv[1:])
    t = user / "runs" / "bert" / "t"
    results = json.loads((t / "results.json").read_text())
    assert set(results["methods"]) == {"fgmt", "naive"}
    assert all(len(m["val_acc"]) == 3 for m in results["methods"].values())
    match = json.loads((user / "runs" / "bert" / "match" / "results.json").read_text())
    assert match["objective_after"] >= match["objective_before"] and match["groups"]
    assert (user / "runs" / "bert" / "match" / "permutation.safetensors").exists()
    permuted = Trajectory(user / "runs" / "bert" / "match" / "b_permuted")
    assert permuted.steps == s1.steps and permuted.model == "mymodels:tiny_bert"
    tuned = [Trajectory(p) for p in t.glob("finetune_*")]
    assert len(tuned) == 1 and tuned[0].complete and None not in tuned[0].metrics("val_acc")


def test_the_guides_plain_module_lines_run_as_written(user):
    from zoo.cli.transfer import main as transfer
    from zoo.cli.zoo import main as zoo

    plain = [c for c in guide_commands() if "mymodels:bag_of_tokens" in c]
    assert [c[:2] for c in plain] == [["zoo", "train"], ["zoo", "train"], ["transfer", "match"]]
    for argv in plain:
        assert {"zoo": zoo, "transfer": transfer}[argv[0]](argv[1:]) == 0, argv
    assert json.loads((user / "runs" / "bag" / "match" / "results.json").read_text())["format"] == "permgraph-match"


def test_a_plain_module_taking_the_dicts_goes_through_zoo_train_and_every_transfer_command(user):
    from zoo.cli.transfer import main as transfer
    from zoo.cli.zoo import main as zoo

    own = ["--model", "mymodels:bag_of_tokens", "--data", "mydata:tok_splits"]
    for seed in (1, 2):
        assert zoo(["train", *own, "--epochs", "2", "--lr", "0.05", "--batch-size", "16", "--seed", str(seed),
                    "--out", f"P{seed}", "--no-progress"]) == 0  # fmt: skip
    p1 = Trajectory(user / "P1")
    assert p1.complete and p1.data == "mydata:tok_splits" and None not in p1.metrics("val_acc")
    assert transfer(["run", "--method", "naive", "--source", "P1", "--target-init", "P2", *own, "--T", "2",
                     "--grad-batches", "2", "--batch-size", "8", "--out", "PT", "--no-progress"]) == 0  # fmt: skip
    assert transfer(["diagnose", "P1", "P2", *own, "--grad-batches", "2", "--batch-size", "8"]) == 0
    # --input instead of a batch of the data, where a spec is inferred (run, diagnose, match)
    shapes = ["--input", "2,12:long", "--input", "2,12:long"]
    assert transfer(["diagnose", "P1", "P2", *own, *shapes, "--grad-batches", "2", "--batch-size", "8"]) == 0
    assert transfer(["run", "--method", "naive", "--source", "P1", "--target-init", "P2", *own, *shapes, "--T", "1",
                     "--grad-batches", "1", "--batch-size", "8", "--out", "PI", "--no-progress"]) == 0  # fmt: skip
    assert transfer(["run", "--method", "naive", "--source", "P1", "--target-init", "P2", *own, "--input", "2,12:long",
                     "--T", "1", "--out", "PJ", "--no-progress"]) == 2  # the one input it was told of is used  # fmt: skip
    assert not (user / "PJ").exists()
    assert transfer(["match", "P1", "P2", *own, "--out", "PM", "--no-progress"]) == 0
    assert transfer(["finetune", "--from", "PT", *own, "--epochs", "1", "--lr", "0.05", "--batch-size", "16",
                     "--out", "PF", "--no-progress"]) == 0  # fmt: skip
    assert Trajectory(user / "PF").complete and (user / "PM" / "b_permuted" / "manifest.json").exists()


def test_finetune_trusts_the_ids_its_caller_gives_and_never_the_ones_a_file_records(user, capsys):
    from zoo.cli.transfer import main as transfer
    from zoo.cli.zoo import main as zoo
    from zoo.finetune import finetune
    from zoo.train import TrainControl, TrainRecipe

    own = ["--model", "mymodels:bag_of_tokens", "--data", "mydata:tok_splits"]
    for seed in (1, 2):
        assert zoo(["train", *own, "--epochs", "1", "--lr", "0.05", "--seed", str(seed), "--out", f"P{seed}",
                    "--no-progress"]) == 0  # fmt: skip
    assert transfer(["run", "--method", "naive", "--source", "P1", "--target-init", "P2", *own, "--T", "1",
                     "--grad-batches", "1", "--batch-size", "8", "--out", "PT", "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    # results.json records mydata:tok_splits: read from a file, it is not imported; the message says what to pass
    assert transfer(["finetune", "--from", "PT", "--model", "mymodels:bag_of_tokens", "--epochs", "1"]) == 2
    assert "--data mydata:tok_splits" in capsys.readouterr().err
    # in Python, ids passed as arguments are the caller's own: no trust flag needed
    traj = finetune("PT", TrainRecipe(epochs=1, lr=0.05, batch_size=16), model="mymodels:bag_of_tokens",
                    data="mydata:tok_splits", dest="PF", control=TrainControl(progress=False))  # fmt: skip
    assert traj.complete and traj.model == "mymodels:bag_of_tokens"


def test_match_takes_input_shapes_and_a_call_that_does_not_fit_names_our_call(user, capsys):
    """``--input SHAPE[:DTYPE]`` (once per positional input) instead of a batch of the data; inputs
    that do not fit the forward are reported as our call of the model, and nothing is written."""
    from zoo.cli.transfer import main as transfer
    from zoo.cli.zoo import main as zoo

    own = ["--model", "mymodels:bag_of_tokens"]
    for seed in (1, 2):
        assert zoo(["train", *own, "--data", "mydata:tok_splits", "--epochs", "1", "--lr", "0.05", "--seed", str(seed),
                    "--out", f"P{seed}", "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    assert transfer(["match", "P1", "P2", *own, "--input", "2,12:long", "--out", "bad"]) == 2
    err = capsys.readouterr().err
    assert "calling BagOfTokens(int64[2, 12]) (from --input) failed" in err and "attention_mask" in err
    assert not (user / "bad").exists()
    assert transfer(["match", "P1", "P2", *own, "--input", "2,12:long", "--input", "2,12:long", "--out", "PM",
                     "--no-progress"]) == 0  # fmt: skip
    assert json.loads((user / "PM" / "results.json").read_text())["format"] == "permgraph-match"


def test_the_readmes_hugging_face_commands_are_the_guides_which_run_above():
    readme = (GUIDE.parents[1] / "README.md").read_text()
    shown = [shlex.split(ln) for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
             for ln in block.splitlines() if "mymodels:" in ln]  # fmt: skip
    assert shown and all(argv in guide_commands() for argv in shown)


def test_training_on_your_dict_datasets_resumes_to_the_same_bits(user):
    from zoo.train import TrainControl, TrainRecipe, train

    recipe = TrainRecipe(epochs=2, lr=0.05, batch_size=16)
    whole = train("mymodels:bag_of_tokens", "mydata:tok_splits", recipe, seed=3, out="whole",
                  control=TrainControl(progress=False))  # fmt: skip
    train("mymodels:bag_of_tokens", "mydata:tok_splits", recipe, seed=3, out="part",
          control=TrainControl(progress=False, stop_after_epochs=1))  # fmt: skip
    assert not Trajectory(user / "part").complete
    part = train("mymodels:bag_of_tokens", "mydata:tok_splits", recipe, seed=3, out="part",
                 control=TrainControl(progress=False))  # fmt: skip
    assert part.complete and part.steps == whole.steps and part.metrics("val_acc") == whole.metrics("val_acc")
    assert all(bool((whole.final()[k] == part.final()[k]).all()) for k in whole.final())
