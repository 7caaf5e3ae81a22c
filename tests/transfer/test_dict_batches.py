"""Dict batches (Hugging Face style) everywhere: a spec is inferred from a real batch the way the model
is called on every batch (``model(**batch)`` with the keys its forward takes, labels left out of the
trace), and a call that does not fit is reported as our call, not as a failure inside the model."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import permgraph
from permgraph.trace import TraceError
from transfer.align import align
from transfer.data import DataError, DatasetData, as_transfer_data
from transfer.diagnose import diagnose
from transfer.engine import TransferEngine
from transfer.evaluation import default_loss
from transfer.inputs import ModelInputs, call_model, infer_spec, inputs_from_batch, inputs_from_shapes, model_kwargs
from transfer.options import TransferOptions
from transfer.trajectory import TrajectoryWriter

VOCAB, LENGTH = 16, 6


class Tokens(Dataset):
    def __init__(self, n: int, seed: int, extra: bool = False) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, VOCAB, (n, LENGTH), generator=g)
        self.labels = (self.ids[:, 0] < VOCAB // 2).long()
        self.extra = extra

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        item = {"input_ids": self.ids[i], "attention_mask": torch.ones(LENGTH, dtype=torch.long), "labels": self.labels[i]}
        if self.extra:
            item["idx"] = torch.tensor(i)  # a key the forward does not take
        return item


class DictNet(nn.Module):
    """A plain module called with the dict's keys, returning logits (no labels in its forward)."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.hidden = nn.Linear(width, width)
        self.head = nn.Linear(width, 2)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).float()
        return self.head(torch.relu(self.hidden((self.embed(input_ids) * mask).mean(1))))


class TakesX(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(LENGTH, 2)

    def forward(self, x):
        return self.lin(x.float())


def tiny_bert(seed: int = 0):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=16, max_position_embeddings=LENGTH, num_labels=2)  # fmt: skip
    torch.manual_seed(seed)
    return transformers.BertForSequenceClassification(config)


def batch_of(dataset: Dataset, n: int = 2):
    return next(iter(DatasetData("d", dataset, dataset).train_batches([torch.arange(n)])))


def test_a_dict_batch_is_traced_with_the_keys_forward_takes_and_without_labels():
    batch = batch_of(Tokens(8, 0, extra=True))
    inputs = inputs_from_batch(DictNet(), batch)
    assert inputs.args == () and sorted(inputs.kwargs) == ["attention_mask", "input_ids"]
    assert inputs.describe(DictNet()) == "DictNet(input_ids=int64[2, 6], attention_mask=int64[2, 6])"
    spec = infer_spec(DictNet(), inputs)
    assert spec.free_groups and permgraph.verify(DictNet(), spec, inputs.args, inputs.kwargs).ok


def test_labels_reach_a_forward_that_takes_them_and_never_the_trace():
    model = tiny_bert()
    batch = batch_of(Tokens(8, 0, extra=True))
    assert set(model_kwargs(model, batch)) == {"input_ids", "attention_mask", "labels"}  # "idx" left out
    assert "labels" not in inputs_from_batch(model, batch).kwargs
    out = call_model(model, batch)
    assert out.loss is not None and torch.equal(default_loss(out, batch), out.loss)  # the model's own loss


def test_a_hugging_face_model_on_dict_datasets_infers_and_transfers_in_the_engine(tmp_path):
    """The reproduction of issue 16: BertForSequenceClassification with dict datasets in TransferEngine."""
    model = tiny_bert()
    data = (Tokens(32, 0), Tokens(16, 1))
    runs = []
    for seed in (1, 2):
        init = tiny_bert(seed).state_dict()
        with TrajectoryWriter(tmp_path / f"s{seed}", model="mine:bert") as w:
            w.save(init, step=0, epoch=0.0)
            w.save({k: v + 0.05 if v.is_floating_point() else v for k, v in init.items()}, step=1, epoch=1.0)
        runs.append(tmp_path / f"s{seed}")
    engine = TransferEngine(model, data, TransferOptions(T=1, grad_batches=1, batch_size=8, progress=False))
    assert engine.spec.free_groups  # inferred from model(input_ids=..., attention_mask=...)
    result = engine.run("naive", runs[0], runs[1])
    assert len(result["val_acc"]) == 2


def test_a_forward_that_takes_none_of_the_batch_keys_is_reported_as_our_call():
    with pytest.raises(DataError, match=r"model\(\*\*batch\).*TakesX\.forward\(x\).*input_ids"):
        inputs_from_batch(TakesX(), batch_of(Tokens(4, 0)))


def test_inputs_that_make_the_forward_fail_name_the_call_and_where_they_came_from():
    with pytest.raises(DataError, match=r"calling DictNet\(int64\[2, 6\]\) \(from --input\) failed: TypeError"):
        infer_spec(DictNet(), inputs_from_shapes(["2,6:long"]))


def test_a_trace_failure_names_the_call_it_traced():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(LENGTH, 2)

        def forward(self, input_ids, attention_mask):
            if input_ids.float().sum() > 0:  # data-dependent control flow: torch.export refuses it
                return self.lin(input_ids.float())
            return self.lin(attention_mask.float())

    inputs = inputs_from_batch(Branchy(), batch_of(Tokens(4, 0)))
    with pytest.raises(TraceError, match=r"^tracing Branchy\(input_ids=int64\[2, 6\], attention_mask=int64\[2, 6\]\) "):
        infer_spec(Branchy(), inputs)


def test_tensor_batches_keep_their_positional_call():
    x, y = torch.randn(4, 3), torch.zeros(4).long()
    assert inputs_from_batch(nn.Linear(3, 2), (x, y)).args[0] is x
    data = as_transfer_data(((x, y), (x, y)))
    assert torch.equal(inputs_from_batch(nn.Linear(3, 2), data.example_batch()).args[0], x[:2])


def test_diagnose_and_align_take_dict_data(tmp_path):
    data = as_transfer_data((Tokens(32, 0), Tokens(16, 1)))
    runs = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        net = DictNet()
        with TrajectoryWriter(tmp_path / f"r{seed}", model="mine:dictnet") as w:
            w.save(net.state_dict(), step=0, epoch=0.0)
            w.save({k: v * 1.1 for k, v in net.state_dict().items()}, step=1, epoch=1.0)
        runs.append(tmp_path / f"r{seed}")
    options = TransferOptions(grad_batches=1, batch_size=8, progress=False)
    d = diagnose(DictNet(), data, runs[0], DictNet().state_dict(), options)
    assert d.verdict in ("likely", "unlikely")
    inputs = inputs_from_batch(DictNet(), data.example_batch())
    res = align(runs[0], runs[1], model=DictNet(), example_inputs=inputs)
    assert res["objective"] >= res["objective_before"] - 1e-9
    assert set(res["groups"]) == {g.name for g in res["spec"].free_groups}
    assert isinstance(inputs, ModelInputs)


def test_match_writes_its_folder_and_never_into_a_run_or_someone_elses(tmp_path):
    from transfer.align import write_match
    from transfer.files import FolderError
    from transfer.results import TransferError
    from transfer.trajectory import Trajectory

    runs = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        with TrajectoryWriter(tmp_path / f"r{seed}", model="mine:dictnet") as w:
            w.save(DictNet().state_dict(), step=0, epoch=0.0)
            w.save(DictNet().state_dict(), step=1, epoch=1.0)
        runs.append(tmp_path / f"r{seed}")
    inputs = inputs_from_batch(DictNet(), batch_of(Tokens(4, 0)))
    res = align(runs[0], runs[1], model=DictNet(), example_inputs=inputs)
    for _ in range(2):  # a rerun replaces its own outputs
        summary = write_match(tmp_path / "m", res, model="mine:dictnet", progress=False)
    assert summary["objective_after"] >= summary["objective_before"]
    permuted = Trajectory(tmp_path / "m" / "b_permuted")
    assert permuted.steps == [0, 1] and permuted.complete
    expected = permgraph.apply(res["spec"], res["perm"], Trajectory(runs[1]).final())
    assert all(torch.equal(permuted.final()[k], v) for k, v in expected.items())
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("mine")
    with pytest.raises(FolderError):
        write_match(tmp_path / "theirs", res, model="mine:dictnet", progress=False)
    assert sorted(p.name for p in (tmp_path / "theirs").iterdir()) == ["notes.txt"]
    with pytest.raises(TransferError, match="inside run A"):
        write_match(runs[0] / "m", res, model="mine:dictnet", progress=False)
    assert not (runs[0] / "m").exists()
