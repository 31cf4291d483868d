"""Run one benchmark by name, or list them: `python -m bench [NAME] [args...]`."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: ./dev bench NAME [args]\n\nbenchmarks:")
        for name in names:
            doc = (importlib.import_module(f"bench.{name}").__doc__ or "").strip().splitlines()
            print(f"  {name:20} {doc[0] if doc else ''}")
        return 0
    if argv[0] not in names:
        print(f"error: no benchmark named {argv[0]!r}; known: {', '.join(names)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{argv[0]}")
    result = module.main(argv[1:])
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
