"""The figure ``transfer run`` writes beside ``results.json``: ``OUT/transfer.png``.

Validation accuracy and loss of the transferred parameters per step t, one line per method, in the
method registry's styles (:func:`transfer.methods.plot_style`), so GMT, FGMT, Naive and Oracle look
the same here as in every experiment's figure. Drawn from ``results.json`` alone (never inside the
engine's loop): ``plot_results(load_results(out), out / "transfer.png")`` redraws it any time.

The figure is a bare :class:`matplotlib.figure.Figure` on an Agg canvas, never pyplot's: drawing
it switches no backend and registers nothing in pyplot's figure list, so a notebook's backend and
figures are left as they were (and pyplot's import is skipped).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transfer.files import atomic_write_bytes
from transfer.methods import plot_style

__all__ = ["PLOT", "plot_results", "results_figure"]

PLOT = "transfer.png"


def _steps(entry: Mapping[str, Any]) -> list[int]:
    t = entry.get("t")
    return list(t) if isinstance(t, list) and len(t) == len(entry["val_acc"]) else list(range(len(entry["val_acc"])))


def plot_results(results: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Draw ``results`` (a ``results.json``: its ``setting`` and ``methods``) to ``path`` (PNG,
    written atomically; its metadata says ``Software: permgraph``)."""
    fig = results_figure(results)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, metadata={"Software": "permgraph"})
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def results_figure(results: Mapping[str, Any]):
    """The figure of :func:`plot_results`: accuracy (left) and loss (right) per t, a line per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    setting = results.get("setting", {})
    fig = Figure(figsize=(9, 3.6))
    FigureCanvasAgg(fig)  # the figure's canvas: Agg, whatever backend pyplot uses
    acc_ax, loss_ax = fig.subplots(1, 2)
    for method, entry in results["methods"].items():
        style = dict(plot_style(method))
        fmt = style.pop("fmt")
        t = _steps(entry)
        acc_ax.plot(t, [100 * a for a in entry["val_acc"]], fmt, **style)
        loss = [x if isinstance(x, (int, float)) and math.isfinite(x) else float("nan") for x in entry["val_loss"]]
        loss_ax.plot(t, loss, fmt, **style)
    for ax, what in ((acc_ax, "validation accuracy (%)"), (loss_ax, "validation loss")):
        ax.set_xlabel("transfer step t")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    acc_ax.legend(fontsize=8)
    title = f"{setting.get('model', '?')} on {setting.get('data', '?')}: trajectory transfer"
    if "T" in setting:
        title += f", T={setting['T']}"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
