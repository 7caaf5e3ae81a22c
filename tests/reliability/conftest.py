"""Fixtures of the reliability suite (the helpers they use are in reliability_kit.py)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from reliability_kit import USER_MODELS, record_run


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> Path:
    """Two finished runs (seeds 1 and 2) to copy from; tests never modify these."""
    root = tmp_path_factory.mktemp("reliability_runs")
    record_run(root / "s1", 1)
    record_run(root / "s2", 2)
    return root


@pytest.fixture
def work(tmp_path, runs) -> Path:
    """A private copy of the two runs, free to damage."""
    for name in ("s1", "s2"):
        shutil.copytree(runs / name, tmp_path / name)
    return tmp_path


@pytest.fixture
def user_code(tmp_path, monkeypatch) -> Path:
    """A folder with the user's own model module, importable as ``user_models_rel``."""
    folder = tmp_path / "usercode"
    folder.mkdir()
    (folder / "user_models_rel.py").write_text(textwrap.dedent(USER_MODELS))
    monkeypatch.syspath_prepend(str(folder))
    return folder
