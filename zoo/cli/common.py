"""What every command line shares: the exit codes, one-line errors, and Ctrl-C.

Exit codes: 0 success, 1 a check that ran and failed (``permgraph verify``), 2 bad input (one line
saying what is wrong and what to do), 3 an internal error (one line; the traceback with ``--debug``),
130 interrupted (one line; long commands resume when run again).
"""

from __future__ import annotations

import argparse
import atexit
import gc
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable
from typing import NoReturn

from permgraph.trace import TraceError
from transfer.checks import InputError
from transfer.data import DataError
from transfer.files import FolderError, LockError
from transfer.methods import MethodError
from transfer.options import OptionsError
from transfer.results import TransferError
from transfer.store import StoreError
from transfer.trajectory import TrajectoryError
from zoo.errors import ZooError

__all__ = [
    "USER_ERRORS", "run_command", "add_common_flags", "share_common_flags",
    "OK", "FAILED", "BAD_INPUT", "INTERNAL", "INTERRUPTED", "leave", "show_progress",
]  # fmt: skip

OK, FAILED, BAD_INPUT, INTERNAL, INTERRUPTED = 0, 1, 2, 3, 130
BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool whose reader closed the pipe

# errors a user can fix: their messages say what is wrong and what to do
USER_ERRORS: tuple[type[BaseException], ...] = (
    ZooError, TransferError, TrajectoryError, OptionsError, DataError, StoreError, MethodError, TraceError,
    FolderError, LockError, FloatingPointError, InputError,
)  # fmt: skip


VERBOSE_HELP = ("log each step's result (transfer run: val acc, loss and seconds per step) and what the caches "
                "and resume files decide (a cached spec ignored and why, where a run resumes), on stderr")


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    parser.add_argument("--debug", action="store_true", help="print the traceback of an internal error")


def share_common_flags(sub: argparse._SubParsersAction) -> None:
    """``-v`` and ``--debug`` after the sub-command too (``transfer run ... -v``), as well as before it.
    Call it once every sub-command is added. The sub-commands' copies default to "not given", so a flag
    given before the sub-command is kept."""
    for parser in sub.choices.values():
        for flags, text in ((("-v", "--verbose"), VERBOSE_HELP),
                            (("--debug",), "print the traceback of an internal error")):  # fmt: skip
            try:
                parser.add_argument(*flags, action="store_true", default=argparse.SUPPRESS, help=text)
            except argparse.ArgumentError:  # the sub-command defines it itself
                pass


def _one_line(error: BaseException) -> str:
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(text.split()) or type(error).__name__


def run_command(prog: str, fn: Callable[[argparse.Namespace], int], args: argparse.Namespace, resume_hint: str = "") -> int:
    """``fn(args)`` with the project's exit codes and one-line messages on stderr."""
    debug = getattr(args, "debug", False)
    level = logging.DEBUG if debug else logging.INFO if getattr(args, "verbose", False) else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not debug:  # torch's own diagnostics (failed traces, guards) are for --debug; our message says what to do
        logging.getLogger("torch").setLevel(logging.ERROR)
    try:
        return fn(args)
    except BrokenPipeError:  # the reader of our output went away (`... | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return BROKEN_PIPE
    except OSError as e:  # a path that cannot be read or written: the user's to fix
        if debug:
            traceback.print_exc()
        where = f" {e.filename}" if e.filename else ""
        print(f"{prog}: error: cannot access{where}: {e.strerror or e}; check the path and its permissions",
              file=sys.stderr)  # fmt: skip
        return BAD_INPUT
    except USER_ERRORS as e:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return BAD_INPUT
    except KeyboardInterrupt:
        print(f"{prog}: interrupted{resume_hint}", file=sys.stderr)
        return INTERRUPTED
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (run again with --debug for the traceback)"
        print(f"{prog}: internal error: {type(e).__name__}: {_one_line(e)}{hint}", file=sys.stderr)
        return INTERNAL


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars where a person watches: stderr a terminal and no ``--no-progress`` (where the
    command has that flag: ``permgraph check`` has not). Into a log file or a pipe a bar writes a
    carriage return per update, so ``nohup cmd > log 2>&1`` gets none (``-v`` logs one line per step
    there instead)."""
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


def leave(code: int) -> NoReturn:
    """The end of a command's process (its console entry point, never ``main`` called from Python):
    exit with ``code`` without the interpreter's teardown, which costs 0.2-0.3 s after torch and
    matplotlib are loaded (0.6-0.8 s with the collector's cycle search) and does nothing a command
    needs: every file it writes is closed by then.

    What an exit must do still happens: the output is flushed and the ``atexit`` handlers run
    (logging's flush, multiprocessing's children, ``weakref.finalize`` callbacks such as temporary
    folders, torch's own), then :func:`os._exit`. Skipped are module teardown and the finalisers of
    objects still alive. Where something may need them it is a plain :func:`sys.exit` (with the
    collector frozen, which alone saves the cycle search): a non-daemon thread still running (an
    exit waits for it), a profiler or tracer installed (``python -m cProfile``, coverage: they
    write their results at teardown), or ``python -i``. Measured after the paper setting's FGMT:
    exit 0.6-0.8 s -> 0.2-0.25 s (collector frozen) -> 0.05 s."""
    sys.stdout.flush()
    sys.stderr.flush()
    gc.disable()
    gc.freeze()
    if not _teardown_may_matter():
        atexit._run_exitfuncs()  # the handlers Python's own exit runs (CPython; its presence is checked)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _teardown_may_matter() -> bool:
    waited = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    hooks = sys.getprofile() is not None or sys.gettrace() is not None
    return bool(waited) or hooks or bool(sys.flags.inspect) or not hasattr(atexit, "_run_exitfuncs")
