"""Rules from the user's own code: registered in permgraph's registry, refused where they would
replace one silently, removable, and proven by the same check as permgraph's own rules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import permgraph
from permgraph.rules import RULES, Context, RuleOutput, dim_index, rule_key, unregister_rule, user_rules


@torch.library.custom_op("pgtest_user::soft_clip", mutates_args=())
def soft_clip(x: torch.Tensor, limit: float) -> torch.Tensor:
    """Elementwise: commutes with permuting any axis."""
    return limit * torch.tanh(x / limit)


@soft_clip.register_fake
def _(x, limit):
    return torch.empty_like(x)


@torch.library.custom_op("pgtest_user::running_max", mutates_args=())
def running_max(x: torch.Tensor) -> torch.Tensor:
    """A scan along the last axis: depends on the order of its units."""
    return torch.cummax(x, -1).values


@running_max.register_fake
def _(x):
    return torch.empty_like(x)


def elementwise(ctx: Context) -> RuleOutput:
    return ctx.layouts(ctx["x"])


def along_last_axis(ctx: Context) -> RuleOutput:
    t = ctx.layouts(ctx["x"])
    ctx.block(t[dim_index(-1, len(t))], "a running max depends on the order of units")
    return t


class Through(nn.Module):
    """``fc2(op(fc1(x)))`` with 8 hidden units."""

    def __init__(self, op):
        super().__init__()
        self.fc1, self.fc2, self.op = nn.Linear(4, 8), nn.Linear(8, 3), op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.op(self.fc1(x)))


X = torch.randn(2, 4)


def hidden(spec: permgraph.PermSpec) -> permgraph.Group:
    (group,) = [g for g in spec.groups if any(m.param == "fc1.weight" and m.axis == 0 for m in g.members)]
    return group


def test_a_custom_op_without_a_rule_blocks_and_says_so():
    model = Through(lambda h: soft_clip(h, 2.0))
    group = hidden(permgraph.infer(model, (X,)))
    assert not group.is_free and "pgtest_user.soft_clip (soft_clip): no rule" in group.blocked


def test_a_registered_rule_frees_the_group_and_verifies():
    model = Through(lambda h: soft_clip(h, 2.0))
    with permgraph.registered_rule(soft_clip, elementwise):
        spec = permgraph.infer(model, (X,))
        assert hidden(spec).is_free
        assert permgraph.verify(model, spec, (X,)).ok
    assert not hidden(permgraph.infer(model, (X,))).is_free  # gone after the block


def test_a_blocking_rule_for_an_order_dependent_op():
    model = Through(running_max)
    with permgraph.registered_rule("pgtest_user::running_max", along_last_axis):
        group = hidden(permgraph.infer(model, (X,)))
    assert not group.is_free and "a running max depends on the order of units" in group.blocked


def test_the_decorator_registers_and_unregister_removes():
    @permgraph.register_rule("pgtest_user::soft_clip")
    def clip_rule(ctx: Context) -> RuleOutput:
        return ctx.layouts(ctx["x"])

    try:
        assert RULES["pgtest_user.soft_clip"] is clip_rule and user_rules() == {"pgtest_user.soft_clip": clip_rule}
    finally:
        permgraph.unregister_rule("pgtest_user.soft_clip")
    assert "pgtest_user.soft_clip" not in RULES and user_rules() == {}


@pytest.mark.parametrize("name", ["pgtest_user::soft_clip", "pgtest_user.soft_clip", "pgtest_user.soft_clip.default"])
def test_every_spelling_of_an_op_names_one_packet(name):
    key = "pgtest_user.soft_clip"
    assert rule_key(name) == key
    assert rule_key(soft_clip) == key
    assert rule_key(torch.ops.pgtest_user.soft_clip) == key
    assert rule_key(torch.ops.pgtest_user.soft_clip.default) == key


@pytest.mark.parametrize("bad", ["", "my lib::op", "mylib::", 3, "relu"])
def test_a_name_that_is_not_an_op_is_refused(bad):
    with pytest.raises((ValueError, TypeError), match="op"):
        rule_key(bad)


def test_replacing_a_builtin_rule_needs_override():
    builtin = RULES["aten.relu"]
    with pytest.raises(ValueError, match="aten.relu already has permgraph's built-in rule .*override=True"):
        permgraph.register_rule("aten.relu")(elementwise)
    assert RULES["aten.relu"] is builtin
    with permgraph.registered_rule("aten.relu", along_last_axis, override=True):
        assert RULES["aten.relu"] is along_last_axis
        assert not hidden(permgraph.infer(Through(torch.relu), (X,))).is_free
    assert RULES["aten.relu"] is builtin


def test_unregistering_puts_the_builtin_back_and_cannot_remove_it():
    builtin = RULES["aten.relu"]
    permgraph.register_rule("aten.relu", override=True)(elementwise)
    permgraph.unregister_rule("aten.relu")
    assert RULES["aten.relu"] is builtin
    with pytest.raises(ValueError, match="built-in"):
        unregister_rule("aten.relu")
    with pytest.raises(ValueError, match="no rule"):
        unregister_rule("pgtest_user::never_registered")


def test_a_second_users_rule_for_one_op_is_refused_but_the_same_function_again_is_fine():
    with permgraph.registered_rule("pgtest_user::soft_clip", elementwise):
        permgraph.register_rule("pgtest_user::soft_clip")(elementwise)  # its module imported twice
        with pytest.raises(ValueError, match="already has your rule"):
            permgraph.register_rule("pgtest_user::soft_clip")(along_last_axis)
        with pytest.raises(ValueError, match="already has your rule"):  # another lambda is another rule
            permgraph.register_rule("pgtest_user::soft_clip")(lambda ctx: None)
    assert "pgtest_user.soft_clip" not in RULES


def test_the_registry_is_restored_when_the_block_raises():
    with pytest.raises(RuntimeError), permgraph.registered_rule("pgtest_user::soft_clip", elementwise):
        raise RuntimeError("inside")
    assert "pgtest_user.soft_clip" not in RULES and user_rules() == {}


class ClampTwice(torch.autograd.Function):
    """A custom autograd Function: non-strict torch.export traces its forward into ATen ops."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return 2 * x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * grad * (x > 0)


class PrefixSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.cumsum(-1)

    @staticmethod
    def backward(ctx, grad):
        return grad.flip(-1).cumsum(-1).flip(-1)


def test_a_custom_autograd_function_is_inlined_and_needs_no_rule():
    model = Through(ClampTwice.apply)
    spec, analysis = permgraph.infer(model, (X,), return_analysis=True)
    ops = {str(n.target) for n in analysis.traced.graph.nodes if n.op == "call_function"}
    assert "aten.clamp.default" in ops and not any("ClampTwice" in o or "autograd" in o for o in ops), ops
    assert hidden(spec).is_free and permgraph.verify(model, spec, (X,)).ok
    group = hidden(permgraph.infer(Through(PrefixSum.apply), (X,)))
    assert not group.is_free and "cumsum" in group.blocked


# -- the check helper, on users' rules and on permgraph's own ------------------------------

F64 = torch.float64


def test_check_rule_proves_a_right_rule_and_catches_a_wrong_one():
    x = torch.randn(3, 6, dtype=F64)
    with permgraph.registered_rule(soft_clip, elementwise):
        report = permgraph.assert_rule_sound(soft_clip, (x, 2.0), free=(3, 6))
    assert report.ops == ("pgtest_user.soft_clip",)
    with permgraph.registered_rule(running_max, elementwise):  # wrong: claims the scan commutes
        report = permgraph.check_rule(running_max, (x,))
        assert not report.ok and "input 0[axis 1]" in report.problems[0], report
        with pytest.raises(AssertionError, match="changes the output"):
            permgraph.assert_rule_sound(running_max, (x,))
    with permgraph.registered_rule(running_max, along_last_axis):
        assert permgraph.assert_rule_sound(running_max, (x,)).free_sizes == (3,)


def test_check_rule_reports_an_op_without_a_rule_and_a_rule_that_raises():
    x = torch.randn(3, 6, dtype=F64)
    with pytest.raises(AssertionError, match="no rule for pgtest_user.soft_clip"):
        permgraph.assert_rule_sound(soft_clip, (x, 2.0))

    def broken(ctx: Context) -> RuleOutput:
        raise KeyError("limit")

    with permgraph.registered_rule(soft_clip, broken):
        report = permgraph.check_rule(soft_clip, (x, 2.0))
    assert not report.ok and "raised KeyError" in report.problems[0]


def test_check_rule_catches_layouts_that_do_not_fit_the_output():
    x = torch.randn(3, 6, dtype=F64)

    def too_many(ctx: Context) -> RuleOutput:
        return ctx.layouts(ctx["x"]) + [ctx.fresh(1)]

    with permgraph.registered_rule(soft_clip, too_many):
        report = permgraph.check_rule(soft_clip, (x, 2.0))
    assert not report.ok and "sizes (3, 6, 1)" in report.problems[0]


def test_check_rule_on_a_module_permutes_its_parameters_too():
    layer = nn.Linear(5, 4).double()
    report = permgraph.check_rule(layer, (torch.randn(3, 5, dtype=F64),))
    assert report.ok and report.free_sizes == (3, 4, 5)
    assert any("fn.weight[axis 0]" in f and "fn.bias[axis 0]" in f for f in report.free)


def R(*shape: int, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype)


# permgraph's own rules through the user's helper: (call, inputs, sorted sizes of the free groups)
BUILTINS = [
    (torch.relu, (R(3, 5),), (3, 5)),
    (lambda x: x.softmax(-1), (R(3, 5),), (3, 5)),
    (lambda x: x.sum(1), (R(3, 5),), (3, 5)),  # the summed axis may move: the sum is unchanged
    (lambda x: x.unsqueeze(1).expand(3, 4, 5), (R(3, 5),), (3, 4, 5)),  # the expanded axis is constant
    (torch.cumsum, (R(3, 5), 1), (3,)),
    (lambda a, b: a @ b, (R(3, 5), R(5, 2)), (2, 3, 5)),
    (lambda x: x.view(3, 2, 2).transpose(1, 2).reshape(3, 4), (R(3, 4),), (2, 2, 3)),
    (lambda a, b: torch.cat([a, b], 1), (R(3, 2), R(3, 4)), (2, 3, 4)),
    (lambda x: x[:, 1:4], (R(3, 5),), (3, 3)),
    (lambda x: torch.topk(x, 2, 1).values, (R(3, 5),), (3, 5)),
    (lambda x, w: w[x.topk(2, -1).indices], (R(3, 4), R(4, 6)), (3, 4, 6)),
    (torch.nn.functional.layer_norm, (R(3, 5), (5,)), (3, 5)),
    (lambda x, w: torch.nn.functional.conv2d(x, w), (R(1, 3, 5, 5), R(4, 3, 1, 1)), (3, 4)),
]


@pytest.mark.parametrize(("fn", "args", "free"), BUILTINS, ids=[str(i) for i in range(len(BUILTINS))])
def test_permgraphs_own_rules_pass_the_users_check(fn, args, free):
    report = permgraph.assert_rule_sound(fn, args)
    assert report.free_sizes == free, report


def test_the_check_is_also_in_permgraph_testing():
    assert permgraph.testing.assert_rule_sound is permgraph.assert_rule_sound
    assert permgraph.testing.check_rule is permgraph.check_rule
