"""The README's code runs as written when pasted into a script."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _python_blocks(markdown: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown.read_text(), re.S)


def test_readme_vector_env_example_runs_as_a_script(tmp_path: Path) -> None:
    """The Environments example, vector envs included (forkserver workers import the script: it needs
    its ``if __name__ == "__main__":`` guard), saved as a file and run in a fresh interpreter."""
    (block,) = [code for code in _python_blocks(REPO / "README.md") if "make_vec" in code]
    script = tmp_path / "example.py"
    script.write_text(block)
    env = {**os.environ, "PYTHONPATH": str(REPO), "LIBERO_GYM_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2, result.stdout
    assert lines[0].endswith("False")  # the language instruction and is_success after one random step
    assert lines[1].startswith("['") and lines[1].count("', '") == 1  # the two workers' instructions


def test_docs_examples_create_workers_under_a_main_guard() -> None:
    """Every README/docs example that starts vector-env workers does so under ``if __name__ == "__main__":``."""
    spawners = re.compile(r"\b(make_vec|make_vector_env|AsyncVectorEnv|ResilientAsyncVectorEnv)\(")
    for markdown in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for block in _python_blocks(markdown):
            for line in block.splitlines():
                if spawners.search(line) and not line.lstrip().startswith("#"):
                    assert line.startswith((" ", "\t")), f"{markdown.name}: workers started at module level: {line}"
                    assert 'if __name__ == "__main__":' in block, f"{markdown.name}: no main guard: {line}"
