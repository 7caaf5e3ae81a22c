"""What the published pages are made of: numbers as text, markdown tables, and files written
atomically (an interrupted run never leaves half a JSON or PNG where the last good one was)."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from transfer.files import atomic_write_bytes, atomic_write_json

__all__ = ["pct", "num", "md_table", "write_json", "write_text", "save_figure", "pyplot"]


def pct(x: float | None) -> str:
    """An accuracy fraction as a percentage with one decimal ('-' for missing), the precision the
    paper's figures can be read at.

    >>> pct(0.9765), pct(None)
    ('97.7', '-')
    """
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def num(v: float | None) -> str:
    """A published percentage (already in points) with one decimal, '-' where none was published.

    >>> num(97.93), num(None)
    ('97.9', '-')
    """
    return "-" if v is None else f"{v:.1f}"


def md_table(headers: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table.

    >>> print(md_table(["a", "b"], [[1, 2]]))
    | a | b |
    |---|---|
    | 1 | 2 |
    """
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as JSON at ``path``, atomically."""
    atomic_write_json(path, obj)


def write_text(path: Path, text: str) -> None:
    """``text`` (UTF-8) at ``path``, atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure atomically (PNG) and close it, so a long run does not pile figures up."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend: experiments run on machines without a display, and
    importing it lazily keeps ``python -m zoo.experiments list`` fast."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
