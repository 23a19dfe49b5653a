"""benchmarks/agents.py rewrites only its own section of docs/benchmarks.md."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("bench_agents", REPO / "benchmarks" / "agents.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_agents"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_write_section_replaces_only_agents(tmp_path: Path) -> None:
    bench = _module()
    doc = tmp_path / "benchmarks.md"
    bench.write_section("## Agents\n\nfirst\n", doc)  # creates the file
    assert doc.read_text().startswith("# Benchmarks") and "first" in doc.read_text()
    doc.write_text("# Benchmarks\n\n## Envs\n\nenv table\n\n## Agents\n\nold\n\n## Data\n\ndata table\n")
    bench.write_section("## Agents\n\nnew\n", doc)
    text = doc.read_text()
    assert "old" not in text and "new" in text
    assert text.index("## Envs") < text.index("## Agents") < text.index("## Data")
    assert "env table" in text and "data table" in text


def test_write_section_keeps_marked_blocks(tmp_path: Path) -> None:
    bench = _module()
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Agents\n\nold\n\n<!-- data:start -->\n## Data\n\nrows\n<!-- data:end -->\n")
    bench.write_section("## Agents\n\nnew\n", doc)
    text = doc.read_text()
    assert "<!-- data:start -->\n## Data\n\nrows\n<!-- data:end -->" in text and "old" not in text
