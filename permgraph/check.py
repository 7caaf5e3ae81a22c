"""Check a hand-written permutation spec against the model: is it sound, is it complete?

``check_spec`` reads the spec (``permgraph.handspec``: a ``PermSpec``, Git Re-Basin's
``axes_to_perm`` / ``perm_to_axes``, C2M3's names, JSON), infers the model's own spec and compares:

- **structurally**: each hand permutation must be a union of whole inferred free groups, cut as
  they are cut (a permutation of all 64 query rows is not one of 4 heads of 16), touching no axis
  the model fixes (its outputs, its inputs);
- **numerically**, as ``verify`` does (float64, trained-like values): each hand permutation alone,
  then all of them together at random, must leave the outputs unchanged.

Every structural finding is localised to concrete (tensor, axis) pairs of the inferred spec and
carries the relative output change that permuting its permutation alone caused.

>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
>>> x = torch.randn(3, 4)
>>> spec = {"axes_to_perm": {"0.weight": ("P0", None), "2.weight": (None, "P0")}}  # forgot 0.bias
>>> report = check_spec(model, spec, (x,))
>>> report.ok, report.findings[0].kind.value
(False, 'leaves out a tied tensor')
>>> report.findings[0].members
('0.bias axis 0',)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from tqdm.auto import tqdm

from permgraph.apply import apply
from permgraph.handspec import HandSpec, read_hand_spec
from permgraph.handstructure import Finding, FindingKind, Resolved, compare, json_float, resolve, where
from permgraph.infer import infer
from permgraph.spec import Group, PermSpec
from permgraph.testbench import OutputCheck, output_check

__all__ = ["CheckReport", "Finding", "FindingKind", "PermResult", "check_spec"]


@dataclass(frozen=True)
class PermResult:
    """One hand permutation: its units, the tensors it moves, and the relative output change of
    permuting it alone (None when it could not be applied)."""

    name: str
    size: int
    tensors: int
    change: float | None
    holds: bool | None


@dataclass(frozen=True)
class CheckReport:
    """What ``check_spec`` found. ``ok``: sound (every permutation alone and all together keep the
    outputs, every name and axis exists, sizes agree, nothing contradicts the model's structure);
    ``complete``: sound and no inferred symmetry left unused."""

    ok: bool
    complete: bool
    findings: tuple[Finding, ...]
    perms: tuple[PermResult, ...] = ()
    inferred_free_groups: int = 0
    together: float | None = None
    rtol: float = 0.0
    precision: str = "float64"
    source: str = ""

    @property
    def errors(self) -> list[Finding]:
        """The findings that make the spec unsound."""
        return [f for f in self.findings if f.kind.is_error]

    @property
    def notes(self) -> list[Finding]:
        """The findings about symmetry the spec leaves unused (it is still sound)."""
        return [f for f in self.findings if not f.kind.is_error]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data: kinds by name, ``"inf"`` where a change is infinite."""
        data = asdict(self)
        data["findings"] = [f.to_dict() for f in self.findings]
        data["together"] = json_float(self.together)
        for p in data["perms"]:
            p["change"] = json_float(p["change"])
        return data

    def to_json(self, indent: int | None = 1) -> str:
        """The report as JSON text (``permgraph check --format json``)."""
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        verdict = ("SOUND and complete" if self.complete else "SOUND, incomplete") if self.ok else "UNSOUND"
        head = (f"check_spec: {verdict} ({_count(len(self.errors), 'error')}, {_count(len(self.notes), 'note')}; "
                f"{len(self.perms)} hand permutations, {self.inferred_free_groups} inferred free groups; "
                f"{self.precision}, tolerance {self.rtol:.0e} of the largest output)")  # fmt: skip
        rows = [("severity", "kind", "permutation", "message")]
        rows += [(f.severity, f.kind.value, f.perm or "-", f.message) for f in self.findings]
        lines = [head, ""] + _table(rows) if self.findings else [head]
        perm_rows = [("permutation", "units", "tensors", "alone: change", "")]
        perm_rows += [(p.name, str(p.size), str(p.tensors), "-" if p.change is None else f"{p.change:.2g}",
                       "" if p.holds is None else "ok" if p.holds else "BREAKS") for p in self.perms]  # fmt: skip
        together = "-" if self.together is None else f"{self.together:.2g}"
        return "\n".join(lines + [""] + _table(perm_rows) + [f"all together at random: change {together}"])


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    out = []
    for i, r in enumerate(rows):
        out.append("  ".join([c.ljust(w) for c, w in zip(r, widths)] + [r[-1]]).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths) + "  " + "-" * max(7, len(r[-1])))
    return out


@torch.no_grad()
def check_spec(
    model: torch.nn.Module,
    spec: Any,
    example_args: tuple[Any, ...] | Any,
    example_kwargs: dict[str, Any] | None = None,
    *,
    trials: int = 3,
    inferred: PermSpec | None = None,
    outputs: tuple[str, ...] | None = None,
    progress: bool = False,
) -> CheckReport:
    """Judge a hand-written ``spec`` of ``model`` (any form ``permgraph.handspec`` reads).

    Costs one ``infer`` (skipped when ``inferred``, the model's own spec, is given), one
    ``verify``-style reference forward, one forward per hand permutation and ``trials`` forwards
    with all of them together. A hand spec with permutations indexed per head is compared with
    the per-block spec (``infer(..., per_block=True)``), any other with the default one.
    ``outputs``: preserve only these model outputs (as ``infer(outputs=...)``); with ``inferred``
    given, its own ``outputs`` count. ``progress``: a progress bar over the permutations (stderr)."""
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be a positive integer (got {trials!r})")
    hand = read_hand_spec(spec)
    example_args = example_args if isinstance(example_args, tuple) else (example_args,)
    if inferred is None:
        inferred = infer(model, example_args, example_kwargs, per_block=bool(hand.indexed_by), outputs=outputs)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    resolved = resolve(hand, shapes)
    structure = compare(inferred, resolved, shapes)
    check = output_check(model, example_args, example_kwargs, outputs=inferred.outputs)
    hand_spec = _as_permspec(hand, resolved.members, resolved.sizes, shapes)
    results, changes = _alone(check, hand_spec, hand, progress)
    together = _together(check, hand_spec, trials)
    findings = list(resolved.findings) + _with_changes(structure, changes, check, resolved)
    for name, change in changes.items():
        if not check.holds(change) and not any(f.perm == name and f.kind.is_error for f in findings):
            findings.append(Finding(FindingKind.BREAKS_FUNCTION, name, (), (
                f"{name} is made of whole groups the model allows, yet permuting it alone changes the output "
                f"by {change:.2g} relative: a permgraph bug, please report it with the model"), change))  # fmt: skip
    if together is not None and not check.holds(together) and not any(f.kind.is_error for f in findings):
        findings.append(Finding(FindingKind.BREAKS_FUNCTION, None, (), (
            f"each permutation alone keeps the outputs, but all of them together at random change them by "
            f"{together:.2g} relative: two permutations overlap"), together))  # fmt: skip
    ok = not any(f.kind.is_error for f in findings)
    complete = ok and not any(f.kind in (FindingKind.MISSING_SYMMETRY, FindingKind.TIES_INDEPENDENT) for f in findings)
    return CheckReport(ok, complete, tuple(_ordered(findings)), tuple(results), len(inferred.free_groups),
                       together, check.rtol, check.precision, hand.source)  # fmt: skip


def _ordered(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (not f.kind.is_error, list(FindingKind).index(f.kind)))


def _as_permspec(hand: HandSpec, members: Mapping[str, tuple], sizes: Mapping[str, int],
                 shapes: Mapping[str, tuple[int, ...]]) -> PermSpec:
    """The applicable part of the hand spec (valid members only) as a ``PermSpec``, aliases
    left out: the hand spec is applied literally, key by key."""
    groups = []
    for name, ms in members.items():
        outer = hand.indexed_by.get(name)
        groups.append(Group(name, sizes[name], tuple(ms), indexed_by=outer if outer in members else None))
    order = {g.name: i for i, g in enumerate(groups)}
    groups.sort(key=lambda g: order[g.indexed_by] + 0.5 if g.indexed_by else order[g.name])
    return PermSpec(tuple(groups), param_shapes=dict(shapes), model="hand-written")


def _only(spec: PermSpec, name: str) -> PermSpec:
    group = spec.group(name)
    keep = {name} | ({group.indexed_by} if group.indexed_by else set())
    return replace(spec, groups=tuple(g for g in spec.groups if g.name in keep))


def _alone(check: OutputCheck, spec: PermSpec, hand: HandSpec,
           progress: bool) -> tuple[list[PermResult], dict[str, float]]:
    """Each hand permutation applied alone: one forward each."""
    results, changes = [], {}
    by_name = {g.name: g for g in spec.groups}
    for name, axes in tqdm(hand.perms.items(), desc="check_spec: each permutation alone", unit="perm",
                           disable=not progress, leave=False):  # fmt: skip
        g = by_name.get(name)
        if g is None or not g.is_free:
            results.append(PermResult(name, g.size if g else 0, len({a.param for a in axes}), None, None))
            continue
        alone = _only(spec, name)
        perm = check.random_permutation(alone)
        if g.indexed_by:  # only the inner permutation: the outer one is judged on its own
            perm = {name: perm[name]}
        change = check.change(apply(alone, perm, check.state))
        changes[name] = change
        results.append(PermResult(name, g.size, len(g.params), change, check.holds(change)))
    return results, changes


def _together(check: OutputCheck, spec: PermSpec, trials: int) -> float | None:
    if not spec.free_groups:
        return None
    return max(check.change(apply(spec, check.random_permutation(spec), check.state)) for _ in range(trials))


def _applied(resolved: Resolved) -> set[tuple[str, str]]:
    """(perm, "name axis k") of every member the numerical check applies."""
    return {(perm, where(m)) for perm, ms in resolved.members.items() for m in ms}


def _odd_change(check: OutputCheck, resolved: Resolved, f: Finding) -> float | None:
    """For a finding about a member of another size than its permutation (the check could not
    apply it with the rest): how far permuting that member alone moves the outputs (one forward)."""
    grid = next((m for m in resolved.odd.get(f.perm or "", ()) if f.members and where(m) == f.members[0]), None)
    if grid is None or grid.sizes[grid.group_dim] < 2:
        return None
    probe = PermSpec((Group("probe", grid.sizes[grid.group_dim], (grid,)),), param_shapes={})
    return check.change(apply(probe, check.random_permutation(probe), check.state))


def _with_changes(findings: list[Finding], changes: Mapping[str, float], check: OutputCheck,
                  resolved: Resolved) -> list[Finding]:
    """Each structural error, confirmed (or not) numerically: by permuting its permutation alone
    (a left-out tensor: the permutation without it), or, for a member of another size, that member
    alone. Validity errors (names, ranks, sizes) need no confirmation."""
    applied, out = _applied(resolved), []
    for f in findings:
        change, subject = (changes.get(f.perm) if f.perm else None), f.perm
        if f.kind is not FindingKind.LEAVES_OUT_TIED and not all((f.perm, m) in applied for m in f.members):
            change, subject = (None if f.kind is FindingKind.SIZE_MISMATCH else _odd_change(check, resolved, f),
                               f.members[0] if f.members else None)  # fmt: skip
        if not f.kind.is_error or change is None:
            out.append(f)
        elif check.holds(change):
            out.append(replace(f, change=change, message=f.message + (
                f" (yet permuting {subject} alone left these outputs unchanged, {change:.1g} relative: permgraph "
                "cannot prove it, and other inputs may show the break)")))  # fmt: skip
        else:
            out.append(replace(f, change=change, message=f.message + (
                f" (permuting {subject} alone changes the output by {change:.2g} relative)")))
    return out
