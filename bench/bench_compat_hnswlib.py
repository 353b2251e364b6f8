#!/usr/bin/env python3
"""simkern.compat.hnswlib against hnswlib 0.8.0, the same calls on both, one thread (the issue's comparison).

    python bench/bench_compat_hnswlib.py             # 20k x 128 clustered vectors, about a minute
    python bench/bench_compat_hnswlib.py --quick     # smoke test: 3k vectors, 3 rounds
    python bench/bench_compat_hnswlib.py --n 100000 --json hnswlib.json

Calls (M=16, ef_construction=200, ef=64, k=10; num_threads=1 on both, SIMKERN_NUM_THREADS=1 and the BLAS
variables set before any import):

1. ``add_items`` of all n vectors into a fresh index (build);
2. ``knn_query`` of 1000 queries in one call;
3. ``knn_query`` of one query, 200 calls (the per-call overhead of a Python shim shows here);
4. ``knn_query`` with a ``filter`` callable passing half the labels, 1000 queries in one call, and one query per
   call (the shim calls the filter once per live label per call, hnswlib once per visited element);
5. ``save_index`` and ``load_index`` (hnswlib's format on both);
6. ``BFIndex.knn_query`` (exact), 100 queries.

Each library searches the graph it built itself, so recall@10 against the exact neighbours is reported beside
each search row. Timings: _harness.time_group (warmed up, interleaved rounds, order rotated), median per call;
ratio = hnswlib / shim (> 1: the shim is faster).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import cpu_model, fmt_ms, log, one_thread, time_group  # noqa: E402

one_thread()  # before NumPy and the peers are imported

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402


def clustered(n, dim, seed, clusters=64):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32) * 2
    return (centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, dim)).astype(np.float32)).astype(
        np.float32)


def exact_top(x, q, k):
    d = (q ** 2).sum(1)[:, None] - 2 * q @ x.T + (x ** 2).sum(1)[None]
    return np.argsort(d, axis=1)[:, :k]


def recall(found, truth):
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / len(b) for a, b in zip(found, truth)]))


def timed(rounds, calls, target=0.2):
    """{name: median seconds per call} of {name: callable}, timed by _harness.time_group (interleaved rounds)."""
    methods = [{"name": name, "fn": fn} for name, fn in calls.items()]
    time_group(methods, rounds, target)
    return {m["name"]: m["median_s"] for m in methods}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    if args.quick:
        args.n, args.rounds = 3000, 3
    try:
        import hnswlib
    except ImportError:
        log("hnswlib is not installed (pip install -e '.[compat]'): nothing to compare")
        return 0
    import simkern.compat.hnswlib as shim

    x, q = clustered(args.n, args.dim, 1), clustered(1000, args.dim, 2)
    truth = exact_top(x, q, 10)
    libs = {"hnswlib": hnswlib, "shim": shim}
    rows = []

    def build(mod):
        p = mod.Index("l2", args.dim)
        p.init_index(args.n, M=16, ef_construction=200, random_seed=1)
        p.set_num_threads(1)
        p.add_items(x, num_threads=1)
        p.set_ef(64)
        return p

    build_rounds = max(1, min(3, args.rounds))
    t_build = timed(build_rounds, {name: (lambda m=m: build(m)) for name, m in libs.items()})
    index = {name: build(m) for name, m in libs.items()}
    rows.append(("add_items (build)", t_build, {}))

    t = timed(args.rounds, {name: (lambda p=p: p.knn_query(q, k=10, num_threads=1)) for name, p in index.items()})
    rec = {name: recall(p.knn_query(q, k=10, num_threads=1)[0].astype(np.int64), truth) for name, p in index.items()}
    rows.append(("knn_query 1000 queries", t, rec))

    def singles(p, count=200, **kw):
        for i in range(count):
            p.knn_query(q[i], k=10, num_threads=1, **kw)

    rows.append(("knn_query 1 query x 200", timed(args.rounds, {n: (lambda p=p: singles(p)) for n, p in
                                                                 index.items()}), {}))

    def even(label):
        return label % 2 == 0

    t = timed(args.rounds, {n: (lambda p=p: p.knn_query(q, k=10, num_threads=1, filter=even)) for n, p in
                            index.items()})
    rows.append(("knn_query + filter, 1000 queries", t, {}))
    t = timed(args.rounds, {n: (lambda p=p: singles(p, 20, filter=even)) for n, p in index.items()})
    rows.append(("knn_query + filter, 1 query x 20", t, {}))

    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: os.path.join(tmp, f"{name}.bin") for name in libs}
        rows.append(("save_index", timed(args.rounds, {n: (lambda p=p, n=n: p.save_index(paths[n])) for n, p in
                                                       index.items()}), {}))

        def load(mod, path):
            p = mod.Index("l2", args.dim)
            p.load_index(path)
            return p

        rows.append(("load_index", timed(args.rounds, {n: (lambda m=libs[n], n=n: load(m, paths[n])) for n in libs}),
                     {}))

    bf = {}
    for name, mod in libs.items():
        b = mod.BFIndex("l2", args.dim)
        b.init_index(args.n)
        b.add_items(x)
        bf[name] = b
    rows.append(("BFIndex.knn_query 100 queries", timed(args.rounds, {n: (lambda b=b: b.knn_query(q[:100], k=10))
                                                                    for n, b in bf.items()}), {}))

    print(f"\nsimkern.compat.hnswlib vs hnswlib {getattr(hnswlib, '__version__', '0.8.0')}, one thread, "
          f"{args.n} x {args.dim} clustered float32, l2; CPU: {cpu_model()}\n")
    print("| call | hnswlib | shim | hnswlib / shim | recall@10 hnswlib / shim |")
    print("|---|---|---|---|---|")
    out = []
    for name, t, rec in rows:
        ratio = t["hnswlib"] / t["shim"]
        r = f"{rec['hnswlib']:.3f} / {rec['shim']:.3f}" if rec else ""
        print(f"| {name} | {fmt_ms(t['hnswlib'])} | {fmt_ms(t['shim'])} | {ratio:.2f}x | {r} |")
        out.append({"call": name, "hnswlib_s": t["hnswlib"], "shim_s": t["shim"], "ratio": ratio, "recall": rec})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": args.n, "dim": args.dim, "cpu": cpu_model(), "rows": out}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
