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
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from transfer.trajectory import Trajectory

pytest.importorskip("transformers")

MYMODELS = '''
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification


def tiny_bert(num_labels=2):
    config = BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=num_labels)
    return BertForSequenceClassification(config)


class BagOfTokens(nn.Module):
    """Not a Hugging Face model: a forward that takes the dict's keys and returns logits."""

    def __init__(self, vocab=32, width=16, classes=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.hidden = nn.Linear(width, width)
        self.head = nn.Linear(width, classes)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1)
        return self.head(torch.relu(self.hidden(pooled)))


def bag_of_tokens():
    return BagOfTokens()
'''

MYDATA = '''
import torch
from torch.utils.data import Dataset


class Tokens(Dataset):
    """Sequences of 12 token ids; the label says whether token 5 occurs in the first half."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 32, (n, 12), generator=g)
        self.labels = (self.ids[:, :6] == 5).any(1).long()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(12, dtype=torch.long), "labels": self.labels[i]}


def tok_splits(n=64):
    return Tokens(n, 0), Tokens(32, 1)
'''


@pytest.fixture()
def user(tmp_path, monkeypatch):
    """The user's folder with their two modules, on the path of this process and of the commands."""
    (tmp_path / "mymodels.py").write_text(MYMODELS)
    (tmp_path / "mydata.py").write_text(MYDATA)
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


def train_with_trainer(folder: Path, seed: int) -> Path:
    """What the user's training script does: a Trainer run recorded with TrajectoryCallback."""
    import mydata
    import mymodels
    from transformers import Trainer, TrainingArguments

    from transfer.record import TrajectoryCallback

    run = folder / f"S{seed}"
    torch.manual_seed(seed)
    train, val = mydata.tok_splits()
    args = TrainingArguments(output_dir=str(folder / f"hf{seed}"), num_train_epochs=2, per_device_train_batch_size=16,
                             learning_rate=1e-3, eval_strategy="epoch", logging_strategy="epoch", save_strategy="no",
                             report_to=[], use_cpu=True, seed=seed, disable_tqdm=True)  # fmt: skip
    callback = TrajectoryCallback(run, model="mymodels:tiny_bert", data="mydata:tok_splits", seed=seed)
    Trainer(model=mymodels.tiny_bert(), args=args, train_dataset=train, eval_dataset=val, callbacks=[callback]).train()
    return run


def test_a_trainer_recorded_bert_goes_through_run_diagnose_match_and_finetune_from_the_command_line(user):
    s1, s2 = train_with_trainer(user, 1), train_with_trainer(user, 2)
    assert Trajectory(s1).complete and "eval_loss" in Trajectory(s1).checkpoints[-1]["metrics"]
    own = ["--model", "mymodels:tiny_bert", "--data", "mydata:tok_splits"]
    cli(user, "zoo.cli.transfer", "run", "--method", "fgmt,naive", "--source", "S1", "--target-init", "S2", *own,
        "--T", "2", "--grad-batches", "2", "--batch-size", "8", "--out", "T", "--no-progress")  # fmt: skip
    results = json.loads((user / "T" / "results.json").read_text())
    assert set(results["methods"]) == {"fgmt", "naive"}
    assert all(len(m["val_acc"]) == 3 for m in results["methods"].values())
    assert Trajectory(user / "T" / "fgmt").complete

    diag = cli(user, "zoo.cli.transfer", "diagnose", "S1", "S2", *own, "--grad-batches", "2", "--batch-size", "8",
               "--json", "diagnose.json")  # fmt: skip
    assert "verdict" in diag.stdout and json.loads((user / "diagnose.json").read_text())["verdict"]

    cli(user, "zoo.cli.transfer", "match", "S1", "S2", *own, "--out", "M", "--no-progress")
    match = json.loads((user / "M" / "results.json").read_text())
    assert match["objective_after"] >= match["objective_before"] and match["groups"]
    assert (user / "M" / "permutation.safetensors").exists()
    permuted = Trajectory(user / "M" / "b_permuted")
    assert permuted.steps == Trajectory(s2).steps and permuted.model == "mymodels:tiny_bert"

    cli(user, "zoo.cli.transfer", "finetune", "--from", "T", *own, "--epochs", "1", "--lr", "0.001",
        "--batch-size", "16", "--out", "F", "--no-progress")  # fmt: skip
    tuned = Trajectory(user / "F")
    assert tuned.complete and len(tuned.steps) == 2 and None not in tuned.metrics("val_acc")


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
