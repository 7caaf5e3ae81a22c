"""Transfer methods as registered strategies: GMT, FGMT, Naive, Oracle and the random-permutation
control. Importing this package registers them (their ``rank`` gives that order in every report).
See :mod:`transfer.methods.base` for the protocol and how to add one."""

from transfer.methods import fgmt, gmt, naive, oracle, random  # noqa: F401  (registration)
from transfer.methods.base import (
    MethodError,
    TransferMethod,
    get_method,
    label,
    method_names,
    plot_style,
    register,
)

__all__ = ["MethodError", "TransferMethod", "get_method", "label", "method_names", "plot_style", "register"]
