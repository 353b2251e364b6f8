"""Run one fuzz target (see targets.py) with atheris, or with a plain random mutator when atheris is missing.

    python tools/fuzz/fuzz_target.py NAME SEEDS [CORPUS_DIR] [libFuzzer options]   fuzz (SEEDS: make_seeds.py output)
    python tools/fuzz/fuzz_target.py NAME SEEDS --repro FILE...                    replay inputs, print tracebacks

Known findings (targets.KNOWN) are reported and skipped (fuzzing goes on; a replay exits 0) unless --strict.

With atheris the simkern Python modules are instrumented for coverage (the C++ extension is not: libFuzzer sees
the Python paths; the sanitizer build catches memory errors in C++). libFuzzer options pass through, e.g.
-max_total_time=60 -timeout=20 -artifact_prefix=DIR/. Without atheris (no wheel for this Python), the fallback
mutates the corpus files at random (bit flips, byte sets, inserts, deletes, splices, boundary values) for
-max_total_time seconds and saves the first failing input as crash-<sha1>; it has no coverage feedback.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy  # noqa: E402,F401  (imported before instrumentation: only simkern and the targets are instrumented)

try:
    import atheris
except ImportError:
    atheris = None


def _load_targets():
    if atheris is not None:
        with atheris.instrument_imports(include=["simkern", "targets"]):
            import simkern  # noqa: F401
            import targets
    else:
        import targets
    return targets


def _skip_known(test, targets):
    """Let fuzzing go on past the findings in targets.KNOWN (each reported once on stdout)."""
    seen = set()

    def guarded(data: bytes) -> None:
        try:
            test(data)
        except Exception as e:
            where = targets.known(e)
            if where is None:
                raise
            if where not in seen:
                seen.add(where)
                print(f"fuzz_target: known finding {targets.signature(e)} ({where}); continuing", flush=True)
    return guarded


def _options(args):
    opts, files = {}, []
    for a in args:
        if a.startswith("-") and "=" in a:
            k, v = a[1:].split("=", 1)
            opts[k] = v
        else:
            files.append(a)
    return opts, files


def _mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        if op == 0 and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[rng.randrange(len(b))] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif op == 2:
            i = rng.randrange(len(b) + 1)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3 and b:
            i = rng.randrange(len(b))
            del b[i:i + rng.randint(1, 16)]
        elif op == 4 and len(b) >= 8:
            i = rng.randrange(len(b) - 7)
            b[i:i + 8] = rng.choice([0, 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1]).to_bytes(8, "little")
        elif op == 5 and corpus:
            other = rng.choice(corpus)
            i, j = rng.randrange(len(b) + 1), rng.randrange(len(other) + 1)
            b = b[:i] + other[j:j + rng.randint(1, 64)] + b[i:]
        elif op == 6 and b:
            del b[rng.randrange(len(b)):]
    return bytes(b)


def _fallback(test, opts, dirs) -> int:
    corpus = []
    for d in dirs:
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), "rb") as f:
                corpus.append(f.read())
    seconds = float(opts.get("max_total_time", 60))
    rng = random.Random(int(opts.get("seed", 0)) or None)
    prefix = opts.get("artifact_prefix", "./")
    deadline, runs = time.monotonic() + seconds, 0
    print(f"fuzz_target: atheris not installed; random byte mutation for {seconds:.0f} s over {len(corpus)} seeds")
    for data in corpus:  # the seeds themselves first
        _run_one(test, data, prefix)
    while time.monotonic() < deadline:
        data = _mutate(rng, rng.choice(corpus) if corpus else b"", corpus)
        _run_one(test, data, prefix)
        runs += 1
    print(f"fuzz_target: {runs} inputs, no finding")
    return 0


def _run_one(test, data: bytes, prefix: str) -> None:
    try:
        test(data)
    except BaseException:
        path = f"{prefix}crash-{hashlib.sha1(data).hexdigest()}"
        with open(path, "wb") as f:
            f.write(data)
        traceback.print_exc()
        print(f"fuzz_target: finding; input written to {path}")
        sys.exit(1)


def main() -> int:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    name, seeds = sys.argv[1], sys.argv[2]
    targets = _load_targets()
    if name not in targets.TARGETS:
        sys.exit(f"unknown target {name!r}; targets: {', '.join(targets.TARGETS)}")
    targets.BASE = os.path.join(seeds, name, "base")
    test = targets.TARGETS[name]
    args = sys.argv[3:]
    strict = "--strict" in args  # known findings count too
    if strict:
        args.remove("--strict")
    if args and args[0] == "--repro":
        status = 0
        for path in args[1:]:
            with open(path, "rb") as f:
                data = f.read()
            try:
                test(data)
            except BaseException as e:
                traceback.print_exc()
                where = None if strict else targets.known(e)
                print(f"{path}: " + (f"known finding {targets.signature(e)} ({where})" if where else "FINDING"))
                status = status or (0 if where else 1)
        print(f"fuzz_target: {name}: {len(args) - 1} inputs replayed, " + ("no new finding" if not status else
                                                                          "FINDINGS"))
        return status
    if not strict:
        test = _skip_known(test, targets)
    if atheris is None:
        opts, dirs = _options(args)
        return _fallback(test, opts, dirs or [os.path.join(seeds, name, "corpus")])
    atheris.Setup([sys.argv[0]] + args, test)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
