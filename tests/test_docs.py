"""Every Python example in the README and docs/ runs, and prints what it says.

A line ``print(x)  # something`` in an example promises that ``something``
is printed; the test holds the docs to it.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
PROMISE = re.compile(r"^\s*print\(.*\)\s+#\s*(.+)$", re.M)


def _examples() -> list[tuple[str, int, str]]:
    found = []
    for path in DOCS:
        for n, match in enumerate(BLOCK.finditer(path.read_text()), 1):
            found.append((path.name, n, match.group(1)))
    return found


@pytest.mark.parametrize(("doc", "n", "code"), _examples(),
                         ids=[f"{d}#{n}" for d, n, _ in _examples()])
def test_example_runs_and_prints_what_it_promises(doc: str, n: int, code: str) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"{doc} example {n}", "exec"), {"__name__": "__doc_example__"})
    printed = out.getvalue()
    for promise in PROMISE.findall(code):
        assert promise.strip() in printed, f"{doc} example {n} promised {promise!r}"
