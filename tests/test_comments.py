"""Library comments say why, not history or benchmark timings: a measured
figure lives in ``benchmarks/README.md`` next to the command that makes it.

Every ``#`` comment and every docstring (module, class, function) under
``daskgmm/`` is scanned for timings, speed ratios and references to issues.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

import daskgmm

PACKAGE = Path(daskgmm.__file__).parent
BENCHMARKS_README = PACKAGE.parent / "benchmarks" / "README.md"

FORBIDDEN = {
    "a timing": r"\b\d+(\.\d+)?\s*(ms|us|µs|ns)\b",
    "a before -> after time": r"\b\d+(\.\d+)?\s*s\s*->\s*\d",
    "a throughput": r"\b(GFLOP|GB|MB)/s\b",
    "a speed ratio": r"\b\d+(\.\d+)?\s*x\s+(faster|slower|the (time|cost))\b",
    "a reference to an issue": r"\bissue\s+#\d+",
    "history": r"\bany ?more\b",
}


def _texts(source):
    """``(line, text)`` of every comment and docstring of ``source``."""
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string.lstrip("#")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    yield body[0].lineno, body[0].value.value


def _offences(source):
    found = []
    for line, text in _texts(source):
        # A figure may be wrapped over two lines of a comment or docstring.
        flat = " ".join(text.split())
        for what, pattern in FORBIDDEN.items():
            match = re.search(pattern, flat, flags=re.IGNORECASE)
            if match:
                found.append(f"line {line}: {what}: {match.group(0)!r}")
    return found


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda path: str(path.relative_to(PACKAGE))
)
def test_comments_and_docstrings_hold_no_timings_or_history(path):
    assert _offences(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "snippet, what",
    [
        ("# one chunk: 130 ms -> 44 ms\nx = 1\n", "a timing"),
        ("x = 1  # 0.34 s -> 0.12 s on 2 workers\n", "a before -> after time"),
        ('def f():\n    """Faster (14x slower per\n    entry otherwise)."""\n', "a speed ratio"),
        ("# 2x faster than a fixed quarter\n", "a speed ratio"),
        ("# about 0.8x the time of 8,192-row slices\n", "a speed ratio"),
        ("# See issue #14.\n", "a reference to an issue"),
        ('class C:\n    """Not needed for speed any more."""\n', "history"),
        ("# 12 GFLOP/s on one core\n", "a throughput"),
    ],
)
def test_the_scan_finds_each_kind_of_figure(snippet, what):
    assert [offence.split(": ")[1] for offence in _offences(snippet)] == [what]


def test_the_scan_leaves_code_and_plain_words_alone():
    source = (
        'MESSAGE = "took 130 ms"  # a string in code is no comment\n'
        "# Slices of 2 MiB keep the temporaries in a core's cache.\n"
        'def f():\n    """Status of 3 runs; us, them; 10x10 blocks."""\n'
    )
    assert _offences(source) == []


def test_the_benchmarks_readme_gives_each_figure_its_command():
    text = BENCHMARKS_README.read_text(encoding="utf-8")
    sections = re.split(r"^### ", text, flags=re.MULTILINE)[1:]
    assert sections, "benchmarks/README.md has no figure sections"
    for section in sections:
        title = section.splitlines()[0]
        assert re.search(r"python benchmarks/\w+\.py", section), f"{title!r} names no command"
