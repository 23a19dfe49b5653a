"""The docs and code comments read as documentation, not as a work log; every doc is reachable.

Scanned: README.md and docs/** (Markdown whole; committed JSON for absolute paths), and the
comments and docstrings of the .py files under agents/, libero_gym/, benchmarks/, scripts/
and tests/. History belongs in git; a result names the command that reproduces it.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
CODE_DIRS = ("agents", "libero_gym", "benchmarks", "scripts", "tests")

# forbidden:start (this block is not scanned)
# Matched on lower-cased text; each pattern starts with a literal (fast), and a match counts only
# where a word starts (see _starts_word).
FORBIDDEN: dict[str, list[re.Pattern[str]]] = {
    "work-log 'session'": [re.compile(r"sessions?\b")],
    "issue number": [re.compile(r"issues?[\s-]*#?\d+\b"), re.compile(r"#\d{1,4}\b"),
                     re.compile(r"the\s+issue(?:'s)?\b")],
    "worktree": [re.compile(r"worktrees?\b")],
    "'the probe'": [re.compile(r"the\s+probe\b")],
    "machine-load remark": [re.compile(r"machine[\s-]+load\b")],
}
ABSOLUTE_PATH = re.compile(r"/(?:work|home|tmp|Users|root|mnt|scratch)/")
# forbidden:end


def _starts_word(text: str, start: int, also_not_after: str = "_&#") -> bool:
    """True where ``text[start]`` begins a word: not inside an identifier or an HTML entity."""
    return start == 0 or not (text[start - 1].isalnum() or text[start - 1] in also_not_after)


def _line(text: str, offset: int, first_line: int = 1) -> int:
    return first_line + text.count("\n", 0, offset)


def _hits(text: str, first_line: int = 1) -> list[tuple[int, str, str]]:
    """(line, rule, matched text) for every forbidden word in ``text``."""
    low = text.lower()
    return [(_line(low, m.start(), first_line), rule, m.group(0))
            for rule, patterns in FORBIDDEN.items() for pattern in patterns
            for m in pattern.finditer(low) if _starts_word(low, m.start())]


def _prose(path: Path) -> list[tuple[int, str]]:
    """The comments and docstrings of a Python file, each with its first line number."""
    source = path.read_text(encoding="utf-8")
    skip: set[int] = set()
    lines = source.splitlines()
    if path.resolve() == Path(__file__).resolve():
        start = next(i for i, line in enumerate(lines, 1) if line.startswith("# forbidden:start"))
        end = next(i for i, line in enumerate(lines, 1) if line.startswith("# forbidden:end"))
        skip = set(range(start, end + 1))
    prose = [(tok.start[0], tok.string) for tok in tokenize.generate_tokens(io.StringIO(source).readline)
             if tok.type == tokenize.COMMENT and tok.start[0] not in skip]
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str) and node.lineno not in skip):
            prose.append((node.lineno, node.value.value))
    return prose


def _markdown() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]


def _python() -> list[Path]:
    return [path for folder in CODE_DIRS for path in sorted((REPO / folder).rglob("*.py"))]


def test_docs_have_no_work_log_words() -> None:
    found = [f"{path.relative_to(REPO)}:{line}: {rule}: {text!r}"
             for path in _markdown() for line, rule, text in _hits(path.read_text(encoding="utf-8"))]
    assert not found, "docs read as a work log (say what was measured and the command):\n" + "\n".join(found)


def test_code_comments_and_docstrings_have_no_work_log_words() -> None:
    found = []
    for path in _python():
        if not _hits(path.read_text(encoding="utf-8")):
            continue  # most files: no candidate anywhere, so none in their prose; no need to parse them
        for first_line, text in _prose(path):
            found += [f"{path.relative_to(REPO)}:{line}: {rule}: {word!r}" for line, rule, word in _hits(text, first_line)]
    assert not found, "comments/docstrings read as a work log:\n" + "\n".join(found)


def test_committed_docs_and_json_hold_no_absolute_paths() -> None:
    files = [*_markdown(), *sorted(DOCS.rglob("*.json")), *sorted(DOCS.rglob("*.jsonl"))]
    found = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        found += [f"{path.relative_to(REPO)}:{_line(text, m.start())}: {text[m.start():m.start() + 60]!r}"
                  for m in ABSOLUTE_PATH.finditer(text) if _starts_word(text, m.start(), "_.~-/")]
    assert not found, "absolute machine paths (use paths relative to the repo or the run folder):\n" + "\n".join(found)


def test_every_doc_is_linked_from_the_readme() -> None:
    linked = set(re.findall(r"\]\((docs/[^)#\s]+\.md)", (REPO / "README.md").read_text(encoding="utf-8")))
    missing = [f"docs/{path.name}" for path in sorted(DOCS.glob("*.md")) if f"docs/{path.name}" not in linked]
    assert not missing, f"not linked from README.md: {missing}"


def test_relative_links_in_the_docs_resolve() -> None:
    broken = []
    for path in _markdown():
        text = re.sub(r"```.*?```|`[^`\n]*`", "", path.read_text(encoding="utf-8"), flags=re.S)  # links, not code
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor on the same page
            if not (path.parent / target.split("#")[0]).exists():
                broken.append(f"{path.relative_to(REPO)}: {target}")
    assert not broken, "links to missing files:\n" + "\n".join(broken)
