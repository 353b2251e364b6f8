"""Command line: ``python -m simkern demo`` (kernels on the embedded dataset), ``python -m simkern info`` or
``python -m simkern bench`` (the bench/ scripts of a source checkout -> one Markdown report)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m simkern {demo,info,bench} [options]\n"
              "  demo   run every kernel on the embedded dataset and print a table (demo --help for options)\n"
              "  info   print the runtime summary (CPU features, ISA per kernel, threads, build)\n"
              "  bench  run the bench/ scripts of a source checkout, write bench/RESULTS.md (bench --help)")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "demo":
        from .demo import main as demo_main

        return demo_main(rest)
    if command == "info":
        from .runtime import show_runtime

        show_runtime()
        return 0
    if command == "bench":
        from .benchreport import main as bench_main

        return bench_main(rest)
    print(f"unknown command {command!r}; expected 'demo', 'info' or 'bench'", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
