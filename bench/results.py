"""Helpers shared by the benchmarks: the machine's state, and their sections of docs/benchmarks.md.

Why: each benchmark writes its own figures, with the command that produced them, into the one
results page; sections are delimited by markers so one benchmark never rewrites another's.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine() -> str:
    """Cores and load average when the run started (the machines are shared: say how busy)."""
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {one:.1f} (1 min) / {five:.1f} (5 min) at the start"


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def write_section(name: str, markdown: str, path: Path = DOCS) -> Path:
    """Replace the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` (appended if absent)."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")
    return path
