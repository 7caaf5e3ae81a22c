"""The guide's "Validate a spec in your tests" example runs as it stands, its tests pass, and what the
section says about the formats and the command holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import permgraph

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide.md"


def section() -> str:
    return GUIDE.read_text().split("### Validate a spec in your tests", 1)[1].split("\n## ", 1)[0]


def guide_test_file() -> str:
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", section(), flags=re.S) if "def test_" in b]
    return block



def test_the_guides_pytest_example_runs_and_its_tests_pass(capsys):
    namespace: dict = {"__name__": "test_my_spec"}
    exec(compile(guide_test_file(), str(GUIDE), "exec"), namespace)
    tests = {k: v for k, v in namespace.items() if k.startswith("test_") and callable(v)}
    assert len(tests) == 4
    for run in tests.values():
        run()
    assert "check_spec: SOUND and complete" in capsys.readouterr().out


def test_the_example_spec_would_fail_with_the_report_as_message():
    namespace: dict = {"__name__": "test_my_spec"}
    exec(compile(guide_test_file(), str(GUIDE), "exec"), namespace)
    spec = {"axes_to_perm": dict(namespace["MY_SPEC"]["axes_to_perm"], **{"fc.bias": ("P_conv",)})}
    with pytest.raises(AssertionError) as failed:
        permgraph.testing.assert_spec_sound(namespace["Net"](), spec, torch.randn(2, 3, 8, 8))
    assert "the permutation spec is unsound" in str(failed.value) and "severity  kind" in str(failed.value)


def test_a_lost_symmetry_fails_assert_symmetries_naming_it():
    namespace: dict = {"__name__": "test_my_spec"}
    exec(compile(guide_test_file(), str(GUIDE), "exec"), namespace)
    model = namespace["Net"]()
    model.forward = lambda x: model.fc(torch.cumsum(torch.relu(model.bn(model.conv(x))), 1).mean(dim=(2, 3)))
    with pytest.raises(AssertionError, match=r"free groups: lost \['conv.out'\]"):
        permgraph.testing.assert_symmetries(model, torch.randn(2, 3, 8, 8), free_groups=["conv.out"])
