"""The transfer-method protocol and its registry.

A method decides the permutation ``pi_t`` used at each step t = 0..T; the engine does everything
else (the loop, evaluation, BatchNorm re-estimation, resume files, outputs). A method is one small
class with a name, a label and a plot style for reports, and three hooks:

* :meth:`TransferMethod.start` gives ``pi_0``;
* :meth:`TransferMethod.step` gives ``pi_t`` from ``pi_{t-1}``, asking the context for synced
  gradients and solves;
* :meth:`TransferMethod.resume` reloads what the method keeps between steps (FGMT's gradient pairs)
  after an interruption. State is written through ``ctx.store`` inside ``step``.

Registering it makes it a ``transfer run --method`` choice, a row of the demo and a line of every
plot::

    @register
    class Mine(TransferMethod):
        name, label, style, color, rank = "mine", "Mine", "x-", "C6", 60
        def step(self, t, prev):
            ...
"""

from __future__ import annotations

from typing import ClassVar

from permgraph.apply import Permutation, identity_permutation
from transfer.context import TransferContext

__all__ = ["TransferMethod", "register", "get_method", "method_names", "label", "plot_style", "MethodError"]


class MethodError(ValueError):
    """An unknown method name."""


class TransferMethod:
    """Base class: the identity at every step (override what differs)."""

    name: ClassVar[str]
    label: ClassVar[str]
    style: ClassVar[str] = "o-"  # matplotlib format string
    color: ClassVar[str | None] = None
    needs_target: ClassVar[bool] = False  # needs the real target run (Oracle)
    summary: ClassVar[str] = ""
    rank: ClassVar[int] = 100  # position in reports and plots (lower first)

    def __init__(self, ctx: TransferContext) -> None:
        self.ctx = ctx

    def start(self) -> Permutation:
        """``pi_0``; the default is the identity."""
        return identity_permutation(self.ctx.spec)

    def step(self, t: int, prev: Permutation) -> Permutation:
        """``pi_t`` given ``pi_{t-1}``; the default keeps the permutation fixed."""
        return prev

    def resume(self, done: int) -> None:
        """Reload the state of steps 1..done after an interruption; the default keeps none."""


_REGISTRY: dict[str, type[TransferMethod]] = {}


def register(cls: type[TransferMethod]) -> type[TransferMethod]:
    """Class decorator: make ``cls`` available by ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise MethodError(f"a transfer method named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def get_method(name: str) -> type[TransferMethod]:
    """The class registered as ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise MethodError(f"unknown method {name!r}; choose one of {', '.join(method_names())}") from None


def method_names() -> list[str]:
    """Every registered method, in report order (by ``rank``, then name)."""
    return sorted(_REGISTRY, key=lambda n: (_REGISTRY[n].rank, n))


def label(name: str) -> str:
    """A method's display name (the name itself for anything unregistered, such as ``standard``)."""
    cls = _REGISTRY.get(name)
    return cls.label if cls is not None else name


def plot_style(name: str) -> dict[str, str]:
    """Keyword arguments for ``ax.plot``: format string, colour and label."""
    cls = _REGISTRY.get(name)
    if cls is None:
        return {"fmt": "o-", "label": name}
    style = {"fmt": cls.style, "label": cls.label}
    if cls.color:
        style["color"] = cls.color
    return style
