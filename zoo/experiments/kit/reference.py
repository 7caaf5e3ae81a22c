"""Published numbers to stand our results beside (validation accuracy, %).

``PAPER_*``: Chijiwa, ICLR 2024 (arXiv 2305.14122 v2), mean of 3 runs, read from the figures' vector
data (±0.1 point); only the steps the paper's text or figure data give are listed.
``OFFICIAL_*``: the released code (``dchiji-ntt/learning-transfer``) run for evaluation on this
project's machines (see docs/results/transfer_mnist.md): MNIST 2-MLP 784-4096-10, E=15, SGD lr 0.01,
momentum 0.9, batch 128, seeds 101 → 102, linear trajectory, T=5, one minibatch of 128 per gradient.
Numbers only; no code of theirs is used.
"""

from __future__ import annotations

__all__ = ["PAPER_FIG5A", "PAPER_FIG5A_TRAINED", "OFFICIAL_FIG5A", "PAPER_CONV8", "PAPER_TABLE3"]

# t -> accuracy, per method
PAPER_FIG5A: dict[str, dict[int, float]] = {
    "gmt": {1: 87.2, 2: 96.8, 5: 98.05},
    "fgmt": {1: 87.2, 2: 96.2, 5: 97.93},
    "oracle": {1: 91.9, 2: 96.8, 5: 97.94},
    "naive": {1: 61.9, 2: 94.2, 5: 97.73},
}
# trained 2-MLP, epochs -> accuracy
PAPER_FIG5A_TRAINED: dict[int, float] = {1: 95.7, 4: 97.8, 10: 98.1}


def _row(*values: float) -> dict[int, float]:
    return {t + 1: v for t, v in enumerate(values)}


# (variant, schedule) -> method -> t -> accuracy. Variant "relu" is the paper's described model (ours);
# "released" is the code's MLP without ReLU. GMT/FGMT of the released model: the first of two runs.
OFFICIAL_FIG5A: dict[tuple[str, str], dict[str, dict[int, float]]] = {
    ("relu", "cosine"): {
        "gmt": _row(69.6, 78.8, 85.4, 90.7, 90.7),
        "fgmt": _row(74.7, 88.7, 90.8, 91.4, 91.8),
        "oracle": _row(91.7, 95.5, 96.4, 96.6, 96.7),
        "naive": _row(12.5, 17.6, 22.3, 24.6, 25.4),
    },
    ("relu", "uniform"): {
        "gmt": _row(67.1, 85.0, 88.5, 91.4, 91.8),
        "fgmt": _row(62.3, 81.2, 86.0, 89.1, 89.8),
        "oracle": _row(86.1, 93.1, 95.3, 96.3, 96.7),
        "naive": _row(11.4, 13.5, 16.8, 21.1, 25.4),
    },
    ("released", "cosine"): {
        "gmt": _row(61.8, 78.4, 71.8, 76.7, 83.8),
        "fgmt": _row(67.9, 82.6, 83.4, 83.9, 84.2),
        "oracle": _row(88.6, 90.4, 90.2, 89.6, 89.5),
        "naive": _row(17.1, 17.3, 16.8, 16.5, 16.4),
    },
}
# FGMT, ReLU, cosine, 20 minibatches of 128 per gradient instead of 1
OFFICIAL_FIG5A_FGMT_20 = _row(84.5, 89.5, 91.8, 92.4, 92.6)
OFFICIAL_TRAINED = {1: (94.6, 95.0), 15: (97.80, 97.95)}

# CIFAR-10 Conv8, T=30 (Fig. 5b) and subsequent training (Fig. 6a), for context only: our Conv8 runs
# are at width 0.25 on Fashion-MNIST / MNIST.
PAPER_CONV8 = {
    "transfer_t30": {"gmt": 76.7, "fgmt": 78.2, "oracle": 78.3, "naive": 61.8},
    "finetune_epoch1": (88.6, 89.0),
    "finetune_final": (91.9, 92.0),
    "scratch_epoch1": 13.5,
    "scratch_final": 91.1,
}

# Table 3: ensemble accuracy (GMT @ fewer epochs, FGMT, Full @ all epochs)
PAPER_TABLE3 = {
    "CIFAR-10": (92.01, 92.11, 92.26),
    "CIFAR-100": (70.41, 69.53, 69.81),
    "Cars": (86.83, 86.61, 87.10),
    "CUB": (74.71, 75.62, 74.02),
}
