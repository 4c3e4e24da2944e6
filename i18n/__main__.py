"""``python -m i18n update`` | ``python -m i18n check [catalog.po ...]`` (see the package doc)."""

from __future__ import annotations

import sys

from .catalog import update_all
from .check import all_problems


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command == "update":
        for path in update_all():
            print(f"updated {path}")
        from .generate import generate_all

        for path in generate_all():
            print(f"generated {path}")
        return 0
    if command == "check":
        problems = all_problems(rest)
        print("\n".join(problems) if problems else "no problems")
        return 1 if problems else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
