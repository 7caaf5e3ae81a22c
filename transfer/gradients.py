"""Synced gradients: the same seeded minibatches for every model, so gradients can be compared.

GMT / FGMT match ``grad L(theta_1^t)`` against ``grad L(theta_2^t)``. The two must see the very
same samples, or the match fits minibatch noise; and the batches must be seeded, or reruns differ
(the official code varies by up to 11 points between identical runs because they are not).
:class:`SyncedGradients` draws the batches of gradient number ``k`` from ``(seed, k)`` alone, so
the source and the target gradient of step ``k`` share them, and a resumed run draws them again.

BatchNorm: statistics are re-estimated (running stats reset, ``momentum=None`` for an exact
average, forward passes in train mode under ``no_grad``) before every evaluation, as the paper
does; an interpolated or transferred parameter vector has no valid running stats of its own.
Gradients are taken in train mode, where BatchNorm normalises with the batch's own statistics:
running stats cannot change a train-mode gradient, so re-estimating them before each gradient
(as the official code does) would only cost forward passes. They are not re-estimated there.

>>> sg = SyncedGradients(model, x_train, y_train, grad_batches=20, batch_size=128, seed=0)
>>> g1 = sg.gradient(source_state, k=1)
>>> g2 = sg.gradient(target_state, k=1)      # the same 20 minibatches as g1
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SyncedGradients", "default_loss", "evaluate", "logits_of", "has_batchnorm", "LossFn"]

log = logging.getLogger(__name__)

LossFn = Callable[[object, torch.Tensor], torch.Tensor]


def logits_of(outputs: object) -> torch.Tensor:
    """The logits tensor of a model's output: a tensor, ``.logits`` (Hugging Face) or the first item."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    if hasattr(outputs, "logits"):
        return outputs.logits
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], torch.Tensor):
        return outputs[0]
    raise TypeError(f"cannot find logits in a model output of type {type(outputs).__name__}; pass loss_fn")


def default_loss(outputs: object, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy; logits ``(..., V)`` against integer targets ``(...)``, so a classifier
    ``(B, C)`` / ``(B,)`` and a language model ``(B, T, V)`` / ``(B, T)`` both work."""
    logits = logits_of(outputs)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def has_batchnorm(model: nn.Module) -> bool:
    return any(_bn_modules(model))


def _bn_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def _mix(seed: int, k: int) -> int:
    """A 63-bit generator seed from (seed, k): distinct streams for distinct gradient numbers."""
    return (int(seed) * 1_000_003 + int(k) * 7_919 + 0x5EED) % (2**63 - 1)


class SyncedGradients:
    """Seeded minibatch gradients, BatchNorm re-estimation and evaluation for one architecture.

    ``model`` is used as a scratch module: every call loads the state it is given, so the
    caller's state dicts are never modified. ``loss_fn(outputs, targets) -> scalar`` defaults
    to mean cross-entropy (:func:`default_loss`); it must be a mean over samples. Without
    BatchNorm, minibatches are stacked into passes of up to ``max_chunk`` samples.
    """

    BN_STREAM = -1  # the batch stream used to re-estimate BatchNorm statistics

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        grad_batches: int = 20,
        batch_size: int = 128,
        bn_batches: int = 20,
        seed: int = 0,
        loss_fn: LossFn | None = None,
        device: str | torch.device = "cpu",
        max_chunk: int = 4096,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"inputs and targets differ in length: {len(x)} vs {len(y)}")
        if grad_batches < 1 or batch_size < 1:
            raise ValueError(f"grad_batches and batch_size must be >= 1, got {grad_batches}, {batch_size}")
        if len(x) < batch_size:
            raise ValueError(f"the training split has {len(x)} samples, fewer than batch_size={batch_size}")
        self.model = model.to(device)
        self.x, self.y = x, y
        self.grad_batches, self.batch_size, self.bn_batches = grad_batches, batch_size, bn_batches
        self.seed = seed
        self.loss_fn = loss_fn or default_loss
        self.device = torch.device(device)
        self.param_names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.bn = _bn_modules(model)
        self.max_chunk = max_chunk

    # ---- batches -------------------------------------------------------------------------
    def batches(self, k: int, count: int | None = None) -> list[torch.Tensor]:
        """Index tensors of the ``count`` (default ``grad_batches``) minibatches of gradient ``k``:
        drawn without replacement within one gradient while the data allow, from ``(seed, k)`` only."""
        count = self.grad_batches if count is None else count
        gen = torch.Generator().manual_seed(_mix(self.seed, k))
        n, need = len(self.x), count * self.batch_size
        order = torch.cat([torch.randperm(n, generator=gen) for _ in range(-(-need // n))])
        return list(order[:need].split(self.batch_size))

    def _load(self, state: Mapping[str, torch.Tensor]) -> None:
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"state dict does not fit the model: {e}") from e

    # ---- gradients -----------------------------------------------------------------------
    def gradient(self, state: Mapping[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
        """Mean loss gradient at ``state`` over the minibatches of gradient ``k`` (train mode).

        Raises ``FloatingPointError`` naming the parameter if any gradient is NaN or infinite.
        """
        self._load(state)
        model = self.model
        model.train()
        model.zero_grad(set_to_none=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_mix(self.seed, k))  # dropout masks, if any, are synced too
            batches = self.batches(k)
            for chunk in self._chunks(batches):
                idx = torch.cat(chunk)
                xb, yb = self.x[idx].to(self.device), self.y[idx].to(self.device)
                loss = self.loss_fn(model(xb), yb)
                if not torch.isfinite(loss):
                    raise FloatingPointError(self._nonfinite_loss_message(float(loss.detach()), k))
                (loss * (len(chunk) / len(batches))).backward()
        grads: dict[str, torch.Tensor] = {}
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if p.grad is None:
                grads[name] = torch.zeros_like(p, device="cpu")
                continue
            if not torch.isfinite(p.grad).all():
                raise FloatingPointError(
                    f"gradient of parameter {name!r} has NaN/inf entries (gradient batch set {k}); "
                    "the parameters or the data hold non-finite values"
                )
            grads[name] = p.grad.detach().to("cpu", copy=True)
        model.zero_grad(set_to_none=True)
        return grads

    def _chunks(self, batches: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        """Minibatches grouped for one forward pass each. With BatchNorm each minibatch is its own
        pass (train-mode statistics depend on the batch); otherwise the mean loss over equal-size
        minibatches is the mean over their union, and one large pass is several times faster on
        CPU (mlp2: one 2560-sample backward instead of twenty 128-sample ones)."""
        if self.bn:
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
        try:
            for m in self.bn:
                m.reset_running_stats()
                m.momentum = None  # cumulative average: exact mean of the batch statistics
            self.model.train()
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(_mix(self.seed, self.BN_STREAM))
                for idx in self.batches(self.BN_STREAM, count=self.bn_batches):
                    self.model(self.x[idx].to(self.device))
        finally:
            for m, mom in zip(self.bn, momenta):
                m.momentum = mom
        fresh = self.model.state_dict()
        return {k: (fresh[k].detach().to("cpu", copy=True) if k in fresh else v) for k, v in state.items()}

    def evaluate(
        self,
        state: Mapping[str, torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int = 1000,
        reestimate: bool = True,
    ) -> tuple[float, float]:
        """(mean loss, accuracy as a fraction) of ``state`` on ``(x, y)`` in eval mode, after
        re-estimating BatchNorm statistics (when the model has any and ``reestimate``)."""
        if reestimate and self.bn:
            state = self.reestimate_bn(state)
        self._load(state)
        return evaluate(self.model, x, y, batch_size=batch_size, loss_fn=self.loss_fn, device=self.device)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 1000,
    loss_fn: LossFn | None = None,
    device: str | torch.device = "cpu",
) -> tuple[float, float]:
    """(mean loss, accuracy as a fraction; per token for sequences) of ``model`` in eval mode;
    the model's train/eval mode is restored afterwards."""
    loss_fn = loss_fn or default_loss
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    try:
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            out = model(xb)
            n = yb.numel()
            total_loss += float(loss_fn(out, yb)) * n
            correct += int((logits_of(out).argmax(-1) == yb).sum())
            count += n
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate() got an empty split")
    return total_loss / count, correct / count
