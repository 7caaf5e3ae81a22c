"""Synced gradients: the same seeded minibatches for every model, so gradients can be compared.

GMT / FGMT match ``grad L(theta_1^t)`` against ``grad L(theta_2^t)``. The two must see the very
same samples, or the match fits minibatch noise; and the batches must be seeded, or reruns differ
(the official code varies by up to 11 points between identical runs because they are not).
:class:`SyncedGradients` draws the batches of gradient number ``k`` from ``(seed, k)`` alone, so
the source and the target gradient of step ``k`` share them, a resumed run draws them again, and
under torch.distributed each rank takes its share and the gradients are summed.

BatchNorm: statistics are re-estimated (running stats reset, ``momentum=None`` for an exact
average, forward passes in train mode under ``no_grad``) before every evaluation, as the paper
does; an interpolated or transferred parameter vector has no valid running stats of its own.
Gradients are taken in train mode, where BatchNorm normalises with the batch's own statistics:
running stats cannot change a train-mode gradient, so re-estimating them before each gradient
(as the official code does) would only cost forward passes. They are not re-estimated there.

>>> import torch
>>> from transfer.data import as_transfer_data
>>> from transfer.options import TransferOptions
>>> model = torch.nn.Linear(4, 3)
>>> data = as_transfer_data(((torch.randn(64, 4), torch.randint(0, 3, (64,))), (torch.randn(8, 4), torch.zeros(8).long())))
>>> sg = SyncedGradients(model, data, TransferOptions(grad_batches=2, batch_size=16))
>>> g1 = sg.gradient(model.state_dict(), k=1)
>>> g2 = sg.gradient(model.state_dict(), k=1)      # the same 2 minibatches: the same gradient
>>> all(torch.equal(g1[k], g2[k]) for k in g1)
True
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping

import torch
from torch import nn

from transfer import distributed as dist
from transfer.data import DatasetData, TensorData, mix_seed, synced_batches
from transfer.evaluation import LossFn, batch_to, call_model, default_loss, evaluate_batches
from transfer.options import TransferOptions

__all__ = ["SyncedGradients", "has_batchnorm", "batchnorm_modules"]

log = logging.getLogger(__name__)


def batchnorm_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The model's BatchNorm layers that keep running statistics (the ones to re-estimate)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def has_batchnorm(model: nn.Module) -> bool:
    return bool(batchnorm_modules(model))


class SyncedGradients:
    """Seeded minibatch gradients, BatchNorm re-estimation and evaluation for one architecture.

    ``model`` is used as a scratch module: every call loads the state it is given, so the
    caller's state dicts are never modified. ``loss_fn(outputs, batch) -> scalar`` defaults
    to mean cross-entropy (:func:`~transfer.evaluation.default_loss`); it must be a mean over
    samples. Without BatchNorm, in-memory minibatches are stacked into passes of up to
    ``max_chunk`` samples. ``options.amp`` runs the forward passes of gradients under bf16 autocast.
    """

    BN_STREAM = -1  # the batch stream used to re-estimate BatchNorm statistics

    def __init__(
        self,
        model: nn.Module,
        data: TensorData | DatasetData,
        options: TransferOptions | None = None,
        loss_fn: LossFn | None = None,
        max_chunk: int = 4096,
    ) -> None:
        options = options or TransferOptions()
        if data.train_size < options.batch_size:
            raise ValueError(
                f"the training split has {data.train_size} samples, fewer than batch_size={options.batch_size}"
            )
        self.device = torch.device(options.device)
        self.model = model.to(self.device)
        self.data = data
        self.grad_batches, self.batch_size, self.bn_batches = options.grad_batches, options.batch_size, options.bn_batches
        self.seed = options.seed
        self.eval_batch_size = options.eval_batch_size
        self.amp = options.amp
        self.loss_fn = loss_fn or default_loss
        self.param_names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.bn = batchnorm_modules(model)
        self.max_chunk = max_chunk

    # ---- batches -------------------------------------------------------------------------
    def batches(self, k: int, count: int | None = None) -> list[torch.Tensor]:
        """Index tensors of the ``count`` (default ``grad_batches``) minibatches of gradient ``k``:
        drawn without replacement within one gradient while the data allow, from ``(seed, k)`` only."""
        count = self.grad_batches if count is None else count
        return synced_batches(self.seed, k, self.data.train_size, count, self.batch_size)

    def _load(self, state: Mapping[str, torch.Tensor]) -> None:
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"state dict does not fit the model: {e}") from e

    def _autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    # ---- gradients -----------------------------------------------------------------------
    def gradient(self, state: Mapping[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
        """Mean loss gradient at ``state`` over the minibatches of gradient ``k`` (train mode).

        Raises ``FloatingPointError`` naming the parameter if any gradient is NaN or infinite.
        """
        self._load(state)
        model = self.model
        model.train()
        model.zero_grad(set_to_none=True)
        batches = self.batches(k)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_seed(self.seed, k))  # dropout masks, if any, are synced too
            chunks = self._chunks(dist.my_share(batches))
            merged = [torch.cat(chunk) for chunk in chunks]
            for chunk, batch in zip(chunks, self.data.train_batches(merged)):
                self._accumulate(batch_to(batch, self.device), len(chunk) / len(batches), k)
        return self._collect()

    def _accumulate(self, batch, weight: float, k: int) -> None:
        with self._autocast():
            loss = self.loss_fn(call_model(self.model, batch), batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(self._nonfinite_loss_message(float(loss.detach()), k))
        (loss * weight).backward()

    def _collect(self) -> dict[str, torch.Tensor]:
        grads: dict[str, torch.Tensor] = {}
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                grads[name] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
        self.model.zero_grad(set_to_none=True)
        dist.all_reduce_sum(list(grads.values()))
        for name, g in grads.items():
            if not torch.isfinite(g).all():
                raise FloatingPointError(
                    f"gradient of parameter {name!r} has NaN/inf entries; the parameters or the data hold "
                    "non-finite values"
                )
        return {name: g.to("cpu") for name, g in grads.items()}

    def _chunks(self, batches: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        """Minibatches grouped for one forward pass each. With BatchNorm each minibatch is its own
        pass (train-mode statistics depend on the batch); otherwise the mean loss over equal-size
        minibatches is the mean over their union, and one large pass is several times faster on
        CPU (mlp2: one 2560-sample backward instead of twenty 128-sample ones)."""
        if self.bn or isinstance(self.data, DatasetData):
            return [[b] for b in batches]
        per = max(1, self.max_chunk // self.batch_size)
        return [batches[i : i + per] for i in range(0, len(batches), per)]

    def _nonfinite_loss_message(self, loss: float, k: int) -> str:
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            return (
                f"the loss is {loss} on gradient batch set {k} because parameter(s) {bad[:5]} hold NaN/inf: "
                "the state given (a trajectory checkpoint or a transferred point) has diverged"
            )
        return (
            f"the loss is {loss} on gradient batch set {k} with finite parameters: the inputs hold NaN/inf "
            "or the model overflows"
        )

    # ---- BatchNorm and evaluation --------------------------------------------------------
    def reestimate_bn(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``state`` with its BatchNorm running statistics recomputed on ``bn_batches`` seeded
        training batches (the same ones for every model). Without BatchNorm: ``state`` unchanged."""
        if not self.bn:
            return dict(state)
        self._load(state)
        momenta = [m.momentum for m in self.bn]
        batches = self.batches(self.BN_STREAM, count=self.bn_batches)
        mine = dist.my_share(batches)
        try:
            for m in self.bn:
                m.reset_running_stats()
                m.momentum = None  # cumulative average: exact mean of the batch statistics
            self.model.train()
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(mix_seed(self.seed, self.BN_STREAM))
                for batch in self.data.train_batches(mine):
                    call_model(self.model, batch_to(batch, self.device))
            self._combine_bn(len(mine), len(batches))
        finally:
            for m, mom in zip(self.bn, momenta):
                m.momentum = mom
        fresh = self.model.state_dict()
        return {k: (fresh[k].detach().to("cpu", copy=True) if k in fresh else v) for k, v in state.items()}

    def _combine_bn(self, mine: int, total: int) -> None:
        """Each rank averaged its own batches: weight by their number and sum, so the statistics are
        the average over all ``total`` batches, as one process computes them."""
        if dist.world_size() == 1:
            return
        for m in self.bn:
            for stat in (m.running_mean, m.running_var):
                if stat is not None:
                    stat.mul_(mine / total)
            dist.all_reduce_sum([s for s in (m.running_mean, m.running_var) if s is not None])
            m.num_batches_tracked.fill_(total)

    def evaluate(self, state: Mapping[str, torch.Tensor], reestimate: bool = True) -> tuple[float, float]:
        """(mean loss, accuracy as a fraction) of ``state`` on the validation split in eval mode, after
        re-estimating BatchNorm statistics (when the model has any and ``reestimate``)."""
        if reestimate and self.bn:
            state = self.reestimate_bn(state)
        self._load(state)
        batches = dist.my_share(list(self.data.val_batches(self.eval_batch_size)))
        total, correct, count = evaluate_batches(self.model, batches, self.loss_fn, self.device)
        sums = torch.tensor([total, correct, count], dtype=torch.float64, device=self.device)
        dist.all_reduce_sum([sums])
        total, correct, count = float(sums[0]), int(sums[1]), int(sums[2])
        if count == 0:
            raise ValueError("the validation split has no targets to evaluate")
        return total / count, correct / count
