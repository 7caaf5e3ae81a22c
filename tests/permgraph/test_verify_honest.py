"""verify is honest: it never reports a proof of nothing (no trial, an empty batch, outputs it
did not compare, a spec with nothing to permute), never crashes on a model it can run, and
never raises a false alarm on a correct spec."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import permgraph
from permgraph.spec import PermSpec


def _mlp(width: int = 8, classes: int = 5) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, classes))


def _break_tie(spec: PermSpec, param: str) -> PermSpec:
    """The spec with ``param`` left out of every group: its units no longer follow the rest."""
    groups = tuple(dataclasses.replace(g, members=tuple(m for m in g.members if m.param != param))
                   for g in spec.groups)
    return dataclasses.replace(spec, groups=groups)


def _free(spec: PermSpec, name: str) -> PermSpec:
    """The spec with group ``name`` declared free although a rule blocked it."""
    return dataclasses.replace(
        spec, groups=tuple(dataclasses.replace(g, blocked=None) if g.name == name else g for g in spec.groups)
    )


# -- never vacuous ---------------------------------------------------------------------------

@pytest.mark.parametrize("trials", [0, -1])
def test_no_trial_is_refused(trials):
    model, x = _mlp(), torch.randn(3, 4)
    spec = permgraph.infer(model, (x,))
    with pytest.raises(ValueError, match="trials must be at least 1"):
        permgraph.verify(model, spec, (x,), trials=trials)


def test_an_empty_batch_is_refused():
    model = _mlp()
    spec = permgraph.infer(model, (torch.randn(3, 4),))
    with pytest.raises(ValueError, match="nothing to compare"):
        permgraph.verify(model, spec, (torch.randn(0, 4),))


class _NaNOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(self.fc1(x).relu()) * float("nan")


def test_outputs_that_are_all_nan_are_nothing_to_compare():
    model, x = _NaNOut(), torch.randn(3, 4)
    with pytest.raises(ValueError, match="nothing to compare"):
        permgraph.verify(model, permgraph.infer(model, (x,)), (x,))


def test_a_spec_with_no_free_group_says_nothing_was_permuted():
    model, x = nn.Linear(4, 3), torch.randn(3, 4)
    spec = permgraph.infer(model, (x,))
    assert not spec.free_groups
    report = permgraph.verify(model, spec, (x,))
    assert report.ok and report.nothing_to_permute
    assert "nothing to permute" in str(report)
    assert "free groups permuted" not in str(report)


# -- integer and boolean outputs are compared exactly -----------------------------------------

class _ArgMax(nn.Module):
    def forward(self, x):
        return x.argmax(-1)


def _classifier() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 5), _ArgMax())


def test_an_argmax_head_is_compared_exactly_and_a_correct_spec_passes():
    model, x = _classifier(), torch.randn(32, 4)
    report = permgraph.verify(model, permgraph.infer(model, (x,)), (x,), trials=3)
    assert report.ok, report
    assert (report.outputs_compared, report.exact_outputs, report.exact_mismatches) == (1, 1, 0)


def test_an_argmax_head_permuted_wrongly_fails():
    """The classes of the last layer are the model's output: permuting them moves the argmax."""
    model, x = _classifier(), torch.randn(32, 4)
    wrong = _free(permgraph.infer(model, (x,)), "2.out")
    report = permgraph.verify(model, wrong, (x,), trials=3)
    assert not report.ok
    assert report.exact_mismatches > 0


def test_an_argmax_head_behind_a_broken_tie_fails():
    model, x = _classifier(), torch.randn(32, 4)
    broken = _break_tie(permgraph.infer(model, (x,)), "2.weight")
    assert not permgraph.verify(model, broken, (x,), trials=3).ok


class _BoolAndFloat(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = _mlp()

    def forward(self, x):
        y = self.body(x)
        return {"logits": y, "positive": y > 0}


def test_boolean_outputs_beside_floating_ones_are_counted():
    model, x = _BoolAndFloat(), torch.randn(16, 4)
    report = permgraph.verify(model, permgraph.infer(model, (x,)), (x,))
    assert report.ok, report
    assert (report.outputs_compared, report.exact_outputs) == (2, 1)


# -- a float32 tensor built in forward -----------------------------------------------------------

class _Float32Constant(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(4, 16), nn.Linear(16, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = self.fc1(x).relu() @ torch.eye(16)  # float32 whatever the parameters are
        return self.fc3(self.fc2(h).relu())


def test_a_float32_constant_in_forward_is_checked_in_float32_and_says_so():
    model, x = _Float32Constant(), torch.randn(3, 4)
    spec = permgraph.infer(model, (x,))
    assert spec.free_groups
    report = permgraph.verify(model, spec, (x,), trials=2)
    assert report.ok, report
    assert report.precision == "float32"
    assert "checked in float32 because" in str(report)


def test_the_float32_check_still_catches_a_broken_tie():
    model, x = _Float32Constant(), torch.randn(3, 4)
    broken = _break_tie(permgraph.infer(model, (x,)), "fc3.weight")
    report = permgraph.verify(model, broken, (x,))
    assert report.precision == "float32"
    assert not report.ok


# -- a cache filled from the parameters ----------------------------------------------------------

class _Cached(nn.Module):
    """Caches a tensor derived from a parameter on its first eval forward and clears it on
    ``train()`` / ``_apply`` (``.double()``), as timm's attention-bias caches do: a copy made
    after that forward holds the cache of the old parameters."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 3)
        self.cache: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True):
        super().train(mode)
        self.cache = {}
        return self

    def _apply(self, fn, *args, **kwargs):
        self.cache = {}
        return super()._apply(fn, *args, **kwargs)

    def forward(self, x):
        if self.training:
            return self.fc2(torch.relu(x @ self.fc1.weight.t() + self.fc1.bias))
        if "w" not in self.cache:
            self.cache["w"] = self.fc1.weight * 2
        return self.fc2(torch.relu(x @ self.cache["w"].t() / 2 + self.fc1.bias))


def test_a_cache_computed_from_unpermuted_parameters_is_never_reused():
    model, x = _Cached().eval(), torch.randn(3, 4)
    spec = permgraph.infer(model, (x,))
    assert spec.free_groups
    report = permgraph.verify(model, spec, (x,), trials=2)
    assert report.ok, report
    assert report.precision == "float64"
    assert model.cache == {}  # verify never runs the caller's model


def test_verify_copies_a_model_whose_cache_autograd_computed():
    """A model run in eval mode with gradients on holds a non-leaf tensor in its cache,
    which ``copy.deepcopy`` refuses to copy."""
    model, x = _Cached().eval(), torch.randn(3, 4)
    spec = permgraph.infer(model, (x,))
    model(x)
    assert not model.cache["w"].is_leaf
    report = permgraph.verify(model, spec, (x,), trials=2)
    assert report.ok, report
    assert not model.cache["w"].is_leaf  # the caller's cache is untouched


class _StaleCache(_Cached):
    """A cache that nothing clears: filled before verify, it belongs to the caller's values."""

    def train(self, mode: bool = True):
        return nn.Module.train(self, mode)

    def _apply(self, fn, *args, **kwargs):
        return nn.Module._apply(self, fn, *args, **kwargs)


def test_a_failure_names_the_tensors_kept_outside_the_state_dict():
    model, x = _StaleCache().eval(), torch.randn(3, 4)
    spec = permgraph.infer(model, (x,))
    with torch.no_grad():
        model(x)
    report = permgraph.verify(model, spec, (x,))
    assert report.ok or "cache['w']" in report.note, report
