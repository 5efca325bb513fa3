"""The shell commands of README.md and docs/*.md, as a user would copy them: every line of a ```bash block, with
backslash continuations joined and comments dropped. tests/test_docs_commands.py maps each one to a cheap run or
an explicit skip with its reason, so a command added to the docs without either fails the suite."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```(?:bash|sh)\n(.*?)^```", text, flags=re.M | re.S)


def commands(block: str) -> list[str]:
    """One command per logical line: continuations joined, `# ...` comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            out.append(re.sub(r"\s+", " ", line))
    return out


def doc_commands() -> dict[str, str]:
    """{command: the first doc that shows it}."""
    found: dict[str, str] = {}
    for path in DOCS:
        for block in shell_blocks(path.read_text()):
            for cmd in commands(block):
                found.setdefault(cmd, path.name)
    return found


if __name__ == "__main__":
    for cmd, doc in doc_commands().items():
        print(f"{doc:16} {cmd}")
