#!/usr/bin/env python3
"""simkern.compat.maxsim_cpu against maxsim-cpu and fast-maxsim, the same calls, one thread.

    python bench/bench_compat_maxsim_cpu.py            # 1000 docs, about 20 s
    python bench/bench_compat_maxsim_cpu.py --quick    # smoke test: 100 docs, 3 rounds

Calls (one 32-token query, dim 128, seeded Gaussian tokens): ``maxsim_scores(query, docs_3d)`` over 1000 docs x
180 tokens, and ``maxsim_scores_variable(query, docs)`` over 1000 docs of 50..180 tokens (a list of 2-D arrays).
Thread variables (SIMKERN_NUM_THREADS, RAYON_NUM_THREADS, BLAS) are 1, set before any import. Timings:
_harness.time_group (interleaved rounds, median); ratio = peer median / shim median (> 1: the shim is faster).
maxsim-cpu 0.1 returns wrong scores on some shapes (python/simkern/compat/maxsim_cpu.py): the check column compares
each peer's scores with the shim's.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import cpu_model, fmt_ms, log, one_thread, print_table, time_group  # noqa: E402

one_thread()  # before NumPy and the peers are imported

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    if args.quick:
        args.docs, args.rounds = 100, 3
    import simkern.compat.maxsim_cpu as shim

    peers = {}
    for name in ("maxsim_cpu", "fast_maxsim"):
        try:
            peers[name] = importlib.import_module(name)
        except ImportError:
            log(f"note: {name} not installed (pip install -e '.[compat]')")
    rng = np.random.default_rng(0)
    q = rng.standard_normal((32, 128)).astype(np.float32)
    docs3 = rng.standard_normal((args.docs, 180, 128)).astype(np.float32)
    docs = [docs3[i, :rng.integers(50, 181)].copy() for i in range(args.docs)]
    rows, out = [], []
    for call, data in (("maxsim_scores (3-D)", docs3), ("maxsim_scores_variable (list)", docs)):
        fn = "maxsim_scores" if isinstance(data, np.ndarray) else "maxsim_scores_variable"
        want = getattr(shim, fn)(q, data)
        methods = [{"name": "simkern.compat.maxsim_cpu", "fn": lambda fn=fn, data=data: getattr(shim, fn)(q, data)}]
        methods += [{"name": n, "fn": lambda m=m, fn=fn, data=data: getattr(m, fn)(q, data)} for n, m in peers.items()]
        time_group(methods, args.rounds, 0.3)
        base = methods[0]["median_s"]
        for m in methods:
            got = np.asarray(m["fn"](), dtype=np.float64)
            err = float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1)))
            check = "ref" if m is methods[0] else ("ok" if err < 1e-4 else "WRONG") + f" {err:.0e}"
            ratio = "-" if m is methods[0] else f"{m['median_s'] / base:.2f}x"
            rows.append([call, m["name"], fmt_ms(m["median_s"]), fmt_ms(m["best_s"]), ratio, check])
            out.append({"call": call, "method": m["name"], "median_s": m["median_s"], "best_s": m["best_s"],
                        "check": check})
    print(f"\nsimkern.compat.maxsim_cpu vs maxsim-cpu / fast-maxsim, one thread, 32-token query, {args.docs} docs, "
          f"dim 128; CPU: {cpu_model()}")
    print_table(rows, ["call", "method", "med ms", "best ms", "peer / shim", "check"], left=2)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"docs": args.docs, "cpu": cpu_model(), "rows": out}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
