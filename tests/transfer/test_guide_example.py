"""The user guide's "Your own model, data and training loop" example runs as it stands in the guide."""

from __future__ import annotations

import re
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide.md"


def own_model_example() -> str:
    section = GUIDE.read_text().split("## 6. Your own model, data and training loop", 1)[1].split("\n## ", 1)[0]
    section = section.split("\n### ", 1)[0]  # its sub-sections have programs of their own (tests/zoo/test_hf_end_to_end.py)
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the section holds one program"
    return blocks[0]


def test_the_guides_own_model_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(own_model_example(), str(GUIDE), "exec"), {"__name__": "guide_example"})
    printed = capsys.readouterr().out
    assert "validation accuracy per step:" in printed
    assert (tmp_path / "runs" / "own" / "transfer" / "results.json").exists()
    assert (tmp_path / "runs" / "own" / "transfer" / "fgmt" / "manifest.json").exists()
