"""Trace a model into an ATen-level ``torch.fx`` graph with shapes and parameter names.

``torch.export.export(strict=False)`` handles Hugging Face models where ``symbolic_trace``
fails, and yields a closed op vocabulary that ``permgraph.rules`` covers. The model is
exported in eval mode (so BatchNorm reads its running statistics and dropout vanishes);
afterwards every module is put back as it was: training flags, and any attribute or cache
that ``eval()`` or the traced forward filled or cleared (see ``permgraph.modstate``).

What torch.export prints to stderr (on failure, a dump of the partial graph) is captured
and logged at DEBUG level on the ``permgraph.trace`` logger; a failure raises ``TraceError``
with the captured text in its ``export_log`` attribute.

>>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
>>> traced = trace(model, (torch.randn(1, 3, 8, 8),))
>>> traced.param_of["p_0_weight"], traced.param_of["b_1_running_mean"]
('0.weight', '1.running_mean')
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import traceback
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
import torch.utils._pytree as pytree
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind

from permgraph.modstate import preserved

__all__ = ["TraceError", "Traced", "as_output_names", "choose_outputs", "pick_outputs", "trace", "tied_aliases"]

log = logging.getLogger(__name__)


class TraceError(RuntimeError):
    """The model could not be exported; the message names where and what to try.
    ``export_log`` holds what torch.export printed meanwhile (kept off the user's stderr)."""

    export_log: str = ""


@dataclass
class Traced:
    """An exported program with what ``infer`` needs to read its graph: which placeholders
    are state-dict tensors (and under which key), which are inputs or constants, which
    outputs the caller sees and which write back into buffers, and tied-weight aliases."""

    program: ExportedProgram
    graph: torch.fx.Graph
    param_of: dict[str, str]  # placeholder name -> state-dict key (params and buffers)
    user_inputs: list[str]
    constants: set[str]  # placeholders of lifted constants / non-persistent buffers
    user_output_indices: list[int]
    buffer_mutations: dict[int, str] = field(default_factory=dict)  # output index -> buffer key
    aliases: dict[str, str] = field(default_factory=dict)
    output_paths: dict[int, tuple[str, ...]] = field(default_factory=dict)  # output index -> its path

    def output_names(self) -> list[str]:
        """The names ``infer(outputs=...)`` accepts: the top-level keys of what the model
        returns (``logits`` of a Hugging Face output, ``0`` and ``1`` of a tuple)."""
        return list(dict.fromkeys(p[0] if p else "0" for p in self.output_paths.values()))


def tied_aliases(model: torch.nn.Module, canonical: set[str]) -> dict[str, str]:
    """State-dict keys that share storage with another key (tied weights), mapped to the
    one in ``canonical`` (the key the traced graph actually reads)."""
    by_id: dict[int, list[str]] = {}
    for name, t in list(model.named_parameters(remove_duplicate=False)) + list(
        model.named_buffers(remove_duplicate=False)
    ):
        by_id.setdefault(id(t), []).append(name)
    aliases: dict[str, str] = {}
    for names in by_id.values():
        if len(names) < 2:
            continue
        target = next((n for n in names if n in canonical), names[0])
        for n in names:
            if n != target:
                aliases[n] = target
    return aliases


def _failing_module(model: torch.nn.Module, exc: BaseException) -> str | None:
    names = {id(m): n for n, m in model.named_modules()}
    found = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        obj = frame.f_locals.get("self")
        if isinstance(obj, torch.nn.Module) and id(obj) in names:
            found = names[id(obj)] or "<root>"
    return found


def _export(model: torch.nn.Module, example_args: tuple[Any, ...], example_kwargs: dict[str, Any]) -> ExportedProgram:
    """``torch.export.export`` in eval mode, leaving ``model`` as it was found, with what
    it prints to stderr captured: torch dumps its partial graph there before raising, which
    would bury our ``TraceError`` under internals. The text goes to the DEBUG log."""
    captured = io.StringIO()
    try:
        with preserved(model), contextlib.redirect_stderr(captured), warnings.catch_warnings():
            # nn.RNN re-assigns its list of weights in forward; preserved() puts it back
            warnings.filterwarnings("ignore", message=r"The tensor attributes .*_flat_weights")
            model.eval()
            return torch.export.export(model, example_args, example_kwargs, strict=False)
    except Exception as e:  # torch.export raises many types; all mean "cannot trace"
        where = _failing_module(model, e)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        error = TraceError(
            f"torch.export could not trace {type(model).__name__}"
            + (f" (failed inside module {where!r})" if where else "")
            + f": {type(e).__name__}: {first}\n"
            "Try: check that model(*example_args, **example_kwargs) runs; remove data-dependent "
            "Python control flow on tensor values; for Hugging Face models pass use_cache=False."
        )
        error.export_log = captured.getvalue()
        raise error.with_traceback(sys.exc_info()[2]) from e
    finally:
        if captured.getvalue():
            log.debug("torch.export wrote to stderr:\n%s", captured.getvalue())


def _key_name(key: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _output_paths(program: ExportedProgram, user: list[int]) -> dict[int, tuple[str, ...]]:
    """Each user output's path in what the model returns (``("logits",)``, ``("1", "0")``),
    keyed by its index among the graph's outputs; empty when export kept no output tree."""
    out_spec = getattr(program.call_spec, "out_spec", None)
    if out_spec is None or out_spec.num_leaves != len(user):
        return {}
    try:  # an output type whose tree cannot be rebuilt from placeholders just has no names
        tree = pytree.tree_unflatten(list(range(out_spec.num_leaves)), out_spec)
        paths = {leaf: tuple(_key_name(k) for k in path) for path, leaf in pytree.tree_flatten_with_path(tree)[0]}
        return {user[leaf]: paths[leaf] for leaf in range(len(user))}
    except Exception:  # noqa: BLE001  (any failure of a third-party pytree registration)
        log.debug("no output names for this model", exc_info=True)
        return {}


def as_output_names(outputs: Sequence[str | int] | str | int | None) -> tuple[str, ...] | None:
    """``infer(outputs=...)`` as a tuple of names: one name or index, or several; None stays
    None (every output counts). An empty choice is refused: it would preserve nothing."""
    if outputs is None:
        return None
    names = (str(outputs),) if isinstance(outputs, (str, int)) else tuple(str(o) for o in outputs)
    if not names:
        raise ValueError("outputs=() names no output; pass the outputs to preserve, or None for all of them")
    return names


def choose_outputs(traced: Traced, outputs: Sequence[str | int]) -> set[int]:
    """The graph's output indices of the chosen outputs (top-level names or indices, or a
    full dotted path such as ``past_key_values.0``). Raises ``ValueError`` naming the model's
    outputs when a name is not among them."""
    chosen: set[int] = set()
    for name in (str(o) for o in outputs):
        hit = {i for i, p in traced.output_paths.items()
               if (p[0] if p else "0") == name or ".".join(p) == name}
        if not hit:
            raise ValueError(f"the model has no output {name!r}; its outputs are: "
                             f"{', '.join(traced.output_names()) or 'none named'}")
        chosen |= hit
    return chosen


def pick_outputs(out: Any, outputs: Sequence[str | int] | None) -> Any:
    """The chosen parts of what a model returned (all of it for ``None``), as a list, by the
    names ``choose_outputs`` takes: dict and ``ModelOutput`` keys, tuple indices."""
    if outputs is None:
        return out
    picked = []
    for name in (str(o) for o in outputs):
        value = out
        for part in name.split("."):
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            elif isinstance(value, (list, tuple)) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
                value = value[int(part)]
            elif isinstance(value, torch.Tensor) and part == "0":
                continue
            else:
                raise ValueError(f"the model's output has no part {name!r}")
        picked.append(value)
    return picked


def trace(
    model: torch.nn.Module,
    example_args: tuple[Any, ...],
    example_kwargs: dict[str, Any] | None = None,
) -> Traced:
    """Export ``model`` on the example inputs; raise ``TraceError`` naming the failing
    module when torch.export cannot follow it."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"permgraph.trace expects an nn.Module, got {type(model).__name__}")
    if not isinstance(example_args, tuple):
        example_args = (example_args,)
    program = _export(model, example_args, example_kwargs or {})

    sig = program.graph_signature
    param_of: dict[str, str] = {}
    constants: set[str] = set()
    user_inputs: list[str] = []
    non_persistent = set(getattr(sig, "non_persistent_buffers", set()) or set())
    for spec in sig.input_specs:
        name = spec.arg.name if hasattr(spec.arg, "name") else str(spec.arg)
        if spec.kind == InputKind.PARAMETER:
            param_of[name] = spec.target
        elif spec.kind == InputKind.BUFFER:
            if spec.target in non_persistent or not spec.persistent:
                constants.add(name)
            else:
                param_of[name] = spec.target
        elif spec.kind == InputKind.USER_INPUT:
            user_inputs.append(name)
        else:
            constants.add(name)
    user_outputs: list[int] = []
    mutations: dict[int, str] = {}
    for i, spec in enumerate(sig.output_specs):
        if spec.kind == OutputKind.BUFFER_MUTATION:
            mutations[i] = spec.target
        elif spec.kind in (OutputKind.USER_OUTPUT, OutputKind.USER_INPUT_MUTATION):
            user_outputs.append(i)
        else:
            user_outputs.append(i)
    # torch.export lists every name of a tied tensor as its own placeholder but reads only
    # one of them: keep that one, and make the others aliases of it.
    used = {param_of[n.name] for n in program.graph_module.graph.nodes
            if n.op == "placeholder" and n.name in param_of and n.users}
    aliases = tied_aliases(model, used)
    param_of = {k: v for k, v in param_of.items() if v not in aliases}
    return Traced(
        output_paths=_output_paths(program, [i for i, spec in enumerate(sig.output_specs)
                                             if spec.kind == OutputKind.USER_OUTPUT]),
        program=program,
        graph=program.graph_module.graph,
        param_of=param_of,
        user_inputs=user_inputs,
        constants=constants,
        user_output_indices=user_outputs,
        buffer_mutations=mutations,
        aliases=aliases,
    )
