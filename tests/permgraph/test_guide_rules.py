"""The user guide's "When a group is blocked: adding a rule" program runs as it stands in the guide."""

from __future__ import annotations

import re
from pathlib import Path

import permgraph
from permgraph.rules import RULES, user_rules

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide.md"
HEADING = "### When a group is blocked: adding a rule"


def rule_example() -> str:
    text = GUIDE.read_text()
    assert text.count(HEADING) == 1, "the guide has the section once"
    section = re.split(r"\n#{2,3} ", text.split(HEADING, 1)[1], maxsplit=1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the section holds one program"
    return blocks[0]


def test_the_guides_rule_example_runs_and_frees_the_group(capsys):
    before = dict(user_rules())
    try:
        exec(compile(rule_example(), str(GUIDE), "exec"), {"__name__": "guide_rules_example"})
        printed = capsys.readouterr().out
        assert "mylib.soft_clip (soft_clip): no rule" in printed
        assert "rule check of mylib.soft_clip: ok" in printed
        assert "[('fc1.out', 8)]" in printed
        assert {"mylib.soft_clip", "mylib.running_max"} <= set(RULES)
    finally:
        for key in set(user_rules()) - set(before):
            permgraph.unregister_rule(key)
    assert "mylib.soft_clip" not in RULES


MODULE = '''
import torch
from torch import nn

import permgraph


@torch.library.custom_op("pgtest_cli::halve", mutates_args=())
def halve(x: torch.Tensor) -> torch.Tensor:
    return x / 2


@halve.register_fake
def _(x):
    return torch.empty_like(x)


@permgraph.register_rule(halve)
def halve_rule(ctx):
    return ctx.layouts(ctx["x"])


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.fc2(halve(self.fc1(x)))
'''


def test_the_command_line_uses_a_rule_registered_by_the_users_module(user_module, capsys):
    from zoo.cli.permgraph import main

    user_module("pgtest_cli_models", MODULE)
    try:
        assert main(["inspect", "pgtest_cli_models:Net", "--input", "2,4"]) == 0
        assert "fc1.out" in capsys.readouterr().out.split("PermSpec")[0]  # listed as a free group
        assert main(["verify", "pgtest_cli_models:Net", "--input", "2,4"]) == 0
    finally:
        if "pgtest_cli.halve" in user_rules():
            permgraph.unregister_rule("pgtest_cli.halve")
