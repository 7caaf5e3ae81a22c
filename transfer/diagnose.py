"""Before paying for a transfer: will it help? ``transfer diagnose SOURCE TARGET_INIT``.

Two measurements, both cheap (a few gradients and norms):

* **Do the gradients match up to a permutation?** The paper's Fig. 3 measures the cosine between the
  permuted source update and the target's own update, against the unpermuted cosine. Here: the
  synced gradients of the source at its init and of the target at its init on one set of minibatches
  give the permutation (one FGMT step); the cosine is then measured on *other* minibatches, so a
  permutation that only fits minibatch noise does not count. Gradient matching can only help where
  the permuted cosine clearly exceeds the unpermuted one.
* **Does the training change outweigh the init?** Per layer, ``|theta_2^0| / |Delta_1|``: the target
  init's norm over the source's whole change. Where it is small (below about 1.5), adding the
  source's change works even unpermuted (Naive), and a permutation has less to add; where it is large,
  the transferred point is dominated by the target's init and a few transfer steps move it little.

The source's own gain in validation accuracy (from its manifest) is reported beside them: a
transfer carries at most what the source's trajectory gained, and the verdict does not weigh it
(``docs/results/diagnose.md`` shows where that misses).

The verdict combines the two measurements: GMT / FGMT are *likely to help* (beyond Naive) when the
held-out permuted cosine beats the unpermuted one by at least ``MIN_GAIN`` and ``MIN_FACTOR`` times
and the init/change ratio is at least ``NAIVE_RATIO``; otherwise *unlikely*, with the reasons. The thresholds were set
from the Fig. 5a gap page's rows (where the ratio's role was found) before the verdict was checked
against the other experiments (``docs/results/diagnose.md``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from permgraph.apply import apply
from transfer.checks import check_finite, check_same_architecture
from transfer.data import as_transfer_data
from transfer.evaluation import LossFn
from transfer.gradients import SyncedGradients
from transfer.identity import open_trajectory
from transfer.inputs import ModelInputs, inputs_from_batch
from transfer.matching import SORTED, Matcher
from transfer.options import TransferOptions
from transfer.spec_lookup import infer_preserving
from transfer.trajectory import Trajectory

__all__ = ["Diagnosis", "diagnose", "MIN_GAIN", "MIN_FACTOR", "plot_diagnosis"]

MIN_GAIN = 0.05  # the permuted cosine must beat the unpermuted one by this much (absolute) ...
MIN_FACTOR = 1.5  # ... and by this factor
NAIVE_RATIO = 1.5  # below this init/change ratio the source's change dominates: Naive works too


@dataclass(frozen=True)
class Diagnosis:
    """What ``diagnose`` measured, and its verdict."""

    cos_identity: float  # held-out minibatches, no permutation
    cos_permuted: float  # held-out minibatches, the permutation matched on other minibatches
    cos_permuted_in_sample: float  # on the minibatches the permutation was matched on (an upper bound)
    init_to_change: dict[str, float]  # per parameter tensor: |theta_2^0| / |Delta_1|
    ratio_median: float
    ratio_total: float  # all parameters at once
    verdict: str  # "likely" | "unlikely"
    reasons: list[str]
    source_gain: float | None = None  # the source's own validation accuracy, last checkpoint minus first

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = [
            f"gradient cosine, target vs source (held-out minibatches): permuted {self.cos_permuted:.3f}, "
            f"unpermuted {self.cos_identity:.3f} (in-sample permuted {self.cos_permuted_in_sample:.3f})",
            f"|theta_2^0| / |Delta_1|: all parameters {self.ratio_total:.2f}, median over tensors {self.ratio_median:.2f}",
            f"verdict: transfer is {self.verdict} to help",
        ]
        if self.source_gain is not None:
            lines.insert(2, f"the source's own trajectory gains {100 * self.source_gain:+.1f} points of validation "
                            "accuracy (a transfer cannot carry more)")  # fmt: skip
        return "\n".join(lines + [f"  - {r}" for r in self.reasons])


def _cosine(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    dot = sum(float((a[k].double() * b[k].double()).sum()) for k in a)
    na = math.sqrt(sum(float(a[k].double().pow(2).sum()) for k in a))
    nb = math.sqrt(sum(float(b[k].double().pow(2).sum()) for k in b))
    return dot / (na * nb) if na > 0 and nb > 0 else 0.0


def _ratios(theta2_0: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor]) -> dict[str, float]:
    out = {}
    for k, d in delta.items():
        change = float(d.double().norm())
        if change > 0:
            out[k] = float(theta2_0[k].double().norm()) / change
    return out


def _verdict(cos_id: float, cos_perm: float, ratio: float) -> tuple[str, list[str]]:
    """Likely to help beyond Naive only when both hold: the gradients match up to a permutation, and
    the target init outweighs the source's change (else Naive already works)."""
    gain = cos_perm - cos_id
    signal = gain >= MIN_GAIN and cos_perm >= MIN_FACTOR * max(cos_id, 0.0)
    dominated = ratio < NAIVE_RATIO
    if signal:
        reasons = [f"the matched permutation raises the held-out gradient cosine by {gain:+.3f}: the two runs' "
                   "gradients agree up to a permutation, which gradient matching exploits"]  # fmt: skip
    else:
        reasons = [f"the matched permutation takes the held-out gradient cosine only from {cos_id:.3f} to {cos_perm:.3f} "
                   f"(needs a gain of +{MIN_GAIN} and at least x{MIN_FACTOR} the unpermuted cosine): no permutation "
                   "makes the target's gradients look like the source's, so GMT / FGMT have nothing to match"]  # fmt: skip
    if dominated:
        reasons.append(f"the source's change outweighs the target init (ratio {ratio:.2f} < {NAIVE_RATIO}): adding it "
                       "unpermuted (Naive) already works, so a permutation has little to add over Naive")  # fmt: skip
    else:
        reasons.append(f"the target init outweighs the source's change (ratio {ratio:.2f} >= {NAIVE_RATIO}): Naive stays "
                       "near the target init, so a good permutation is what moves the transferred point")  # fmt: skip
    return ("likely" if signal and not dominated else "unlikely"), reasons


def diagnose(
    model: nn.Module,
    data: Any,
    source: Trajectory | str | os.PathLike,
    target_init: Mapping[str, torch.Tensor],
    options: TransferOptions | None = None,
    loss_fn: LossFn | None = None,
    example_inputs: ModelInputs | None = None,
    model_name: str = "the model",
) -> Diagnosis:
    """Measure, on ``options.grad_batches`` minibatches per gradient, how well the target init's
    gradients match the source's up to a permutation, and the init/change ratio per layer. The spec
    is inferred on ``example_inputs`` (default: a training batch, called as every batch is:
    :mod:`transfer.inputs`). Inputs are checked first, as ``transfer run`` checks them (one
    architecture, finite values; ``model_name`` is how messages name ``model``, e.g. ``"--model ID"``)."""
    options = options or TransferOptions()
    src = open_trajectory(source, "source trajectory")
    theta1_0, theta1_T = src.init(), src.final()
    check_same_architecture(model.state_dict(), theta1_0, f"the source trajectory {src.path} (recorded model "
                            f"{src.model!r})", model_name)  # fmt: skip
    check_same_architecture(model.state_dict(), target_init, "the target init", model_name)
    check_finite(theta1_0, "the source init")
    check_finite(theta1_T, "the source's final checkpoint")
    check_finite(target_init, "the target init")
    data = as_transfer_data(data, num_workers=options.num_workers)
    spec = infer_preserving(model, example_inputs or inputs_from_batch(model, data.example_batch()), options.outputs)
    sg = SyncedGradients(model, data, options, loss_fn=loss_fn)
    g1 = {k: sg.gradient(theta1_0, k=k) for k in (1, 2)}
    g2 = {k: sg.gradient(dict(target_init), k=k) for k in (1, 2)}
    perm = Matcher(spec).add(g2[1], g1[1]).solve(init=[None, SORTED], seed=options.seed)
    cos_id = _cosine(g2[2], g1[2])
    cos_perm = _cosine(g2[2], apply(spec, perm, g1[2]))
    cos_in = _cosine(g2[1], apply(spec, perm, g1[1]))
    params = [n for n, _ in model.named_parameters()]
    delta = {k: theta1_T[k] - theta1_0[k] for k in params}
    ratios = _ratios(target_init, delta)
    total = float(torch.sqrt(sum(target_init[k].double().pow(2).sum() for k in params)))
    change = float(torch.sqrt(sum(delta[k].double().pow(2).sum() for k in params)))
    ratio_total = total / change if change > 0 else math.inf
    verdict, reasons = _verdict(cos_id, cos_perm, ratio_total)
    median = float(torch.tensor(list(ratios.values())).median()) if ratios else math.inf
    accs = [a for a in src.metrics("val_acc") if isinstance(a, (int, float))]
    gain = accs[-1] - accs[0] if len(accs) >= 2 else None
    return Diagnosis(cos_id, cos_perm, cos_in, ratios, median, ratio_total, verdict, reasons, gain)


def plot_diagnosis(diagnosis: Diagnosis, path: str | os.PathLike, title: str = "") -> None:
    """Per-tensor init/change ratios (log scale) and the three gradient cosines, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(diagnosis.init_to_change)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 1]})
    a.bar(range(len(names)), [diagnosis.init_to_change[n] for n in names], color="C0")
    a.axhline(NAIVE_RATIO, color="gray", ls="--", lw=0.8, label=f"{NAIVE_RATIO}: the change dominates below")
    a.set_yscale("log")
    a.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    a.set_ylabel("|θ₂⁰| / |Δ₁| per tensor")
    a.legend(fontsize=7)
    cos = [diagnosis.cos_identity, diagnosis.cos_permuted, diagnosis.cos_permuted_in_sample]
    b.bar(["unpermuted", "permuted\n(held out)", "permuted\n(in sample)"], cos, color=["C7", "C1", "C3"])
    b.set_ylabel("gradient cosine, target vs source")
    b.set_title(f"verdict: {diagnosis.verdict}", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": "permgraph"})
    plt.close(fig)
