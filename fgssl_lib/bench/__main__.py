"""Dispatch ``python -m fgssl_lib.bench <area> [options]`` to ``fgssl_lib.bench.<area>.main``."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import fgssl_lib.bench as bench_pkg


def areas() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(bench_pkg.__path__) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in areas():
        print(f"usage: python -m fgssl_lib.bench <area> [options]; areas: {', '.join(areas())}", file=sys.stderr)
        return 2
    return int(importlib.import_module(f"fgssl_lib.bench.{argv[0]}").main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
