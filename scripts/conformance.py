"""Render the README's GA Realtime conformance table from the code's registry.

    python scripts/conformance.py           print the table
    python scripts/conformance.py --write   replace the README section between the markers
    python scripts/conformance.py --check   exit 1 if the README section differs

tests/unit/test_realtime_conformance.py runs the check, so the README cannot drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cozy_actors.realtime.conformance import table  # noqa: E402

README = ROOT / "README.md"
START, END = "<!-- conformance:start (scripts/conformance.py --write) -->", "<!-- conformance:end -->"


def current(text: str) -> str:
    """The README's section between the markers."""
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def written(text: str) -> str:
    """The README with its section replaced by the generated table."""
    head, rest = text.split(START, 1)
    return head + START + "\n" + table() + END + rest.split(END, 1)[1]


def main(argv: list[str]) -> int:
    text = README.read_text()
    if "--write" in argv:
        README.write_text(written(text))
        return 0
    if "--check" in argv:
        if current(text) != table():
            print("README conformance table is stale: run python scripts/conformance.py --write", file=sys.stderr)
            return 1
        return 0
    print(table(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
