"""permgraph: infer, apply and verify the permutation symmetries of any PyTorch model.

``infer`` traces the model (``torch.export``), runs one rule per ATen op over the graph and
reads off the *groups* of hidden units that may be permuted without changing the function;
``apply`` permutes a state dict under such a spec, and ``verify`` proves a spec by permuting
at random and comparing outputs in float64.

>>> import torch, permgraph
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
>>> x = torch.randn(3, 4)
>>> spec = permgraph.infer(model, (x,))
>>> [(g.name, g.size) for g in spec.free_groups]
[('0.out', 8)]
>>> permgraph.verify(model, spec, (x,)).ok
True
"""

from permgraph import testing  # pytest helpers: permgraph.testing.assert_spec_sound
from permgraph.apply import apply, compose, group_rows, identity_permutation, invert, random_permutation
from permgraph.check import CheckReport, Finding, FindingKind, check_spec
from permgraph.infer import analyse, infer
from permgraph.rules.public import register_rule, registered_rule, unregister_rule
from permgraph.rules.selfcheck import RuleCheck, assert_rule_sound, check_rule
from permgraph.spec import Group, Member, PermSpec
from permgraph.trace import TraceError, trace
from permgraph.verify import VerifyReport, make_trained_like, verify

__all__ = [
    "CheckReport",
    "Finding",
    "FindingKind",
    "Group",
    "Member",
    "PermSpec",
    "RuleCheck",
    "TraceError",
    "VerifyReport",
    "analyse",
    "apply",
    "assert_rule_sound",
    "check_rule",
    "check_spec",
    "compose",
    "group_rows",
    "identity_permutation",
    "infer",
    "invert",
    "make_trained_like",
    "random_permutation",
    "register_rule",
    "registered_rule",
    "testing",
    "trace",
    "unregister_rule",
    "verify",
]
