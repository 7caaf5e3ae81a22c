"""One experiment's run as its code sees it: the merged config, the folders, and progress messages.

Kept apart from the registry and the pool so that both can take a context without importing each
other.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Context"]


@dataclass
class Context:
    """One experiment's run: its config (validated, ``[tiny]`` and ``--set`` merged in) and where it
    reads and writes. ``pool`` is shared by all experiments, so a run asked for twice is trained once."""

    name: str
    config: dict[str, Any]
    runs: Path
    docs: Path
    pool: Path = Path("runs/experiments/_runs")
    tiny: bool = False
    progress: bool = True
    device: str = "cpu"  # where runs train and transfers compute (the published pages: the CPU)
    command: str = ""
    config_file: str = ""
    started: float = field(default_factory=time.perf_counter)

    def say(self, msg: str) -> None:
        """Progress for the person running the experiment (printed, with the elapsed time), since a
        full experiment runs for an hour and its pieces should say where it is."""
        print(f"[{self.name} {time.perf_counter() - self.started:6.0f}s] {msg}", flush=True)

    def figure(self, suffix: str = "") -> str:
        """The file name of a plot (``NAME<suffix>.png``), as the page links it: the runner saves the
        figure an experiment returns with ``suffix`` under this name."""
        return f"{self.name}{suffix}.png"

    def selected(self, names: Sequence[str]) -> list[str]:
        """``names`` restricted to the config's ``only`` list (all of them without one): a partial
        rerun computes these rows, and the runner merges them into the recorded ones."""
        only = self.config.get("only")
        return [n for n in names if not only or n in only]
