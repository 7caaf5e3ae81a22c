"""permgraph: infer, apply and verify the permutation symmetries of any PyTorch model.

>>> import permgraph
>>> spec = permgraph.infer(model, (x,))
>>> report = permgraph.verify(model, spec, (x,))
"""

from permgraph.apply import apply, compose, group_rows, identity_permutation, invert, random_permutation
from permgraph.infer import analyse, infer
from permgraph.spec import Group, Member, PermSpec
from permgraph.trace import TraceError, trace
from permgraph.verify import VerifyReport, make_trained_like, verify

__all__ = [
    "Group",
    "Member",
    "PermSpec",
    "TraceError",
    "VerifyReport",
    "analyse",
    "apply",
    "compose",
    "group_rows",
    "identity_permutation",
    "infer",
    "invert",
    "make_trained_like",
    "random_permutation",
    "trace",
    "verify",
]
