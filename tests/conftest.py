"""Fixtures every test package shares."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is faster than two fighting over a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """The data and spec caches of every test (and its subprocesses) in a folder of this session, never
    the user's ``~/.cache/permgraph``; a test that sets ``PERMGRAPH_CACHE`` itself overrides it."""
    import os

    before = os.environ.get("PERMGRAPH_CACHE")
    os.environ["PERMGRAPH_CACHE"] = str(tmp_path_factory.mktemp("permgraph-cache"))
    yield
    if before is None:
        os.environ.pop("PERMGRAPH_CACHE", None)
    else:
        os.environ["PERMGRAPH_CACHE"] = before


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """``user_module(name, code)``: write the user's own module and put it on ``sys.path``, as a user
    naming ``name:factory`` on the command line would have it."""

    def write(name: str, code: str):
        (tmp_path / f"{name}.py").write_text(code)
        monkeypatch.syspath_prepend(str(tmp_path))
        return tmp_path / f"{name}.py"

    return write
