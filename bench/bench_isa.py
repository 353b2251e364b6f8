#!/usr/bin/env python3
"""One representative call per kernel family at every ISA level this CPU has: one thread, levels interleaved.

    python bench/bench_isa.py                # about 1-2 minutes on one core
    python bench/bench_isa.py --quick        # smoke test (smaller shapes, fewer rounds)
    python bench/bench_isa.py --json isa.json
    python -m simkern bench isa              # the same, into bench/RESULTS.md

Each call runs under ``simkern.max_isa(level)`` for every level in ``simkern.available_isas()``; rounds go over
the calls and, inside each round, over the levels in a rotated order, so that drift on a shared VM hits every level
alike. A cell is the best of the rounds (``--json``: every sample). The table prints the kernel the call ran at
each level (``kernel_names()`` inside the level: an avx512 entry may name an avx2 kernel, the dispatcher's choice
where the wider one is not faster on this CPU), the best time per level, the ratio of each level to the one below
it (> 1: faster) and the default level's ratio to the fastest level (the issue's target: >= 0.95 for every
family). Ratios are medians over the rounds of the ratio within a round (the levels of a round run back to back),
which a shared VM's slow phases disturb far less than a ratio of best times.
On an AVX-512 CPU an extra column, avx512-own, runs the avx512 level with its own kernels only (no substitution):
what the dispatcher chose against, and its ratio to avx2.

Shapes (seeded N(0, 1) data; dim 128 unless said): MaxSim one query of 8 / 18 / 32 tokens over 2000 docs of 70
tokens (float32 docs, and bfloat16 docs for the 32-token query); FDE (R=20, k=6, AMS 16, fill) on 2000 docs x 70
tokens and 500 queries x 32 tokens, and identity projection (R=10, k=4) on the docs; PQ m=16 (8 bits) encode of
100k rows and train (5 iterations) of 20k rows; PQIndex.search of 100 queries over 100k codes, 8 bits and 4 bits;
HNSW (M=16, ef=64) search of 500 queries in 20k x 128; fwht of 4096 x 256 float32; SRHT sketch of 16384 x 64 to 512
rows; lstsq_sketched (solve) of 16384 x 64.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import cpu_model, log, print_table  # noqa: E402


def family_of(call_name: str) -> str:
    return call_name.split(" ", 1)[0]


def kernel_for(names: dict, call_name: str) -> str:
    fam = family_of(call_name)
    if fam == "maxsim":
        return names["maxsim"]["bfloat16" if "bf16" in call_name else "float32"]
    if fam == "pq-scan8":
        return names["pq"]["scan8"]
    if fam == "pq-scan4":
        return names["pq"]["scan4"]
    if fam == "ivfpq8":  # tables and uint8 tables on the float kernels, the scan on scan8
        return f'{names["pq"]["float32"]} + {names["pq"]["scan8"]}'
    if fam == "ivfpq4":
        return f'{names["pq"]["float32"]} + {names["pq"]["scan4"]}'
    if fam == "pq":
        return names["pq"]["float32"]
    if fam == "fde":
        return names["fde"]["float32"]
    if fam == "hnsw":
        return names["hnsw"]["distances"]
    if fam == "fwht":
        return names["fwht"]["float"]
    if fam in ("sketch", "lstsq"):
        return names["sketch"]["float"]
    return "?"


def build_calls(np, simkern, quick: bool):
    rng = np.random.default_rng(0)
    scale = 4 if quick else 1
    n_docs, doc_len = 2000 // scale, 70
    docs = simkern.Ragged(rng.standard_normal((n_docs * doc_len, 128)).astype(np.float32),
                          np.arange(0, n_docs * doc_len + 1, doc_len, dtype=np.int64))
    import ml_dtypes  # noqa: F401  (bfloat16 docs; a dependency of the test extra)
    docs_bf16 = simkern.Ragged(docs.tokens.astype(ml_dtypes.bfloat16), docs.offsets)
    queries = {n: simkern.Ragged.from_list([rng.standard_normal((n, 128)).astype(np.float32)]) for n in (8, 18, 32)}
    q_sets = simkern.Ragged.from_list([rng.standard_normal((32, 128)).astype(np.float32) for _ in range(500 // scale)])
    fde = simkern.FDE(128, num_repetitions=20, num_simhash_projections=6, projection_dimension=16)
    fde_id = simkern.FDE(128, num_repetitions=10, num_simhash_projections=4, projection="identity",
                         projection_dimension=None)
    x_enc = rng.standard_normal((100_000 // scale, 128)).astype(np.float32)
    x_fit = x_enc[: 20_000 // scale]
    pq = simkern.ProductQuantizer(128, 16).train(x_fit, iters=5, threads=1)
    idx8 = simkern.PQIndex(128, 16, nbits=8).train(x_fit, iters=5, threads=1)
    idx8.add(x_enc, threads=1)
    idx4 = simkern.PQIndex(128, 32, nbits=4).train(x_fit, iters=5, threads=1)
    idx4.add(x_enc, threads=1)
    pq_q = rng.standard_normal((100, 128)).astype(np.float32)
    ivf8 = simkern.IVFPQIndex(128, 64, 16, 8).train(x_fit, iters=3, threads=1)
    ivf8.add(x_enc, threads=1)
    ivf4 = simkern.IVFPQIndex(128, 64, 32, 4).train(x_fit, iters=3, threads=1)
    ivf4.add(x_enc, threads=1)
    hnsw = simkern.HNSWIndex(128, M=16, ef_construction=100, seed=1)
    hnsw.add(x_enc[: 20_000 // scale], threads=1)
    h_q = rng.standard_normal((500 // scale, 128)).astype(np.float32)
    w = rng.standard_normal((4096 // scale, 256)).astype(np.float32)
    a = rng.standard_normal((16384 // scale, 64))
    b = a @ rng.standard_normal(64) + 0.01 * rng.standard_normal(len(a))
    t1 = dict(threads=1)

    def maxsim_probe(n, dtype):  # the kernel the driver picks for one query of n tokens (short-query choice)
        from simkern import _core
        return lambda: _core._maxsim_kernel_for(np.array([0, n], np.int64), 128, dtype, True)

    probes = {f"maxsim f32, 1 query x {n} tokens": maxsim_probe(n, 0) for n in (8, 18, 32)}
    probes["maxsim bf16 docs, 1 query x 32 tokens"] = maxsim_probe(32, 2)
    return probes, [
        ("maxsim f32, 1 query x 8 tokens", lambda: simkern.maxsim(queries[8], docs, **t1)),
        ("maxsim f32, 1 query x 18 tokens", lambda: simkern.maxsim(queries[18], docs, **t1)),
        ("maxsim f32, 1 query x 32 tokens", lambda: simkern.maxsim(queries[32], docs, **t1)),
        ("maxsim bf16 docs, 1 query x 32 tokens", lambda: simkern.maxsim(queries[32], docs_bf16, **t1)),
        ("fde documents (AMS 16)", lambda: fde.encode_documents(docs, **t1)),
        ("fde queries (AMS 16)", lambda: fde.encode_queries(q_sets, **t1)),
        ("fde documents (identity)", lambda: fde_id.encode_documents(docs, **t1)),
        ("pq encode m16", lambda: pq.encode(x_enc, **t1)),
        ("pq train m16", lambda: simkern.ProductQuantizer(128, 16).train(x_fit, iters=5, **t1)),
        ("pq-scan8 PQIndex.search m16", lambda: idx8.search(pq_q, 10, **t1)),
        ("pq-scan4 PQIndex.search m32", lambda: idx4.search(pq_q, 10, **t1)),
        ("ivfpq8 IVFPQIndex.search m16 nprobe 8", lambda: ivf8.search(pq_q, 10, nprobe=8, **t1)),
        ("ivfpq4 IVFPQIndex.search m32 nprobe 8", lambda: ivf4.search(pq_q, 10, nprobe=8, **t1)),
        ("hnsw search ef=64", lambda: hnsw.search(h_q, 10, ef=64, **t1)),
        ("fwht 4096 x 256 f32", lambda: simkern.fwht(w, **t1)),
        ("sketch srht to 512 rows", lambda: simkern.sketch(a, 512, **t1)),
        ("lstsq lstsq_sketched solve", lambda: simkern.lstsq_sketched(a, b, **t1)),
    ]


def run(args) -> dict:
    import numpy as np
    import simkern
    from simkern import _core

    levels = list(simkern.available_isas())
    default = simkern.active_isa()
    if "avx512" in levels:  # the avx512 level with its own kernels only (what the dispatcher chose against)
        levels.append("avx512-own")

    @contextlib.contextmanager
    def at(label):
        with simkern.max_isa(label.removesuffix("-own")):
            _core._set_own_kernels(label.endswith("-own"))
            try:
                yield
            finally:
                _core._set_own_kernels(False)

    probes, calls = build_calls(np, simkern, args.quick)
    names, ran = {}, {}
    for level in levels:
        with at(level):
            names[level] = simkern.kernel_names()
            ran[level] = {c: probe() for c, probe in probes.items()}
    samples = {c: {lv: [] for lv in levels} for c, _ in calls}
    for name, fn in calls:  # warm-up, and one call count per level so that each sample is ~target seconds
        reps = {}
        for level in levels:
            with at(level):
                fn()
                t0 = time.perf_counter()
                fn()
                reps[level] = max(1, int(args.target / max(time.perf_counter() - t0, 1e-6)))
        n = min(reps.values())
        for r in range(args.rounds):
            order = levels[r % len(levels):] + levels[: r % len(levels)]
            for level in order:
                with at(level):
                    t0 = time.perf_counter()
                    for _ in range(n):
                        fn()
                    samples[name][level].append((time.perf_counter() - t0) / n)
        log(f"{name}: " + ", ".join(f"{lv} {min(samples[name][lv]) * 1e3:.2f} ms" for lv in levels))
    return dict(levels=levels, default=default, names=names, ran=ran, samples=samples, cpu=cpu_model(),
                capabilities=simkern.capabilities(), calls=[c for c, _ in calls], dispatch=_core.dispatch_info())


def report(res: dict) -> None:
    cols, default = res["levels"], res["default"]
    levels = [lv for lv in cols if not lv.endswith("-own")]  # the levels a user can select
    d = res.get("dispatch", {})
    print(f"\nCPU: {res['cpu']}; levels: {', '.join(levels)}; default level: {default}; one thread, best of "
          f"{len(next(iter(res['samples'].values()))[cols[0]])} interleaved rounds")
    if "avx512-own" in cols:
        print(f"512-bit FMA probe: {d.get('fma512_flops_per_ns', 0):.0f} vs {d.get('fma256_flops_per_ns', 0):.0f} "
              f"flops/ns at 512 vs 256 bits -> {'full' if d.get('fma512_full_rate') else 'half'} rate "
              f"({d.get('fma512_source')}); 'avx512-own' runs the avx512 level's own kernels, for comparison only")
    print()
    header = ["call"] + [f"{lv} ms" for lv in cols] + [f"{b}/{a}" for a, b in zip(levels, levels[1:])] + \
             (["own/avx2"] if "avx512-own" in cols else []) + ["default/fastest", "kernel per level"]
    rows, worst = [], 1.0
    for call in res["calls"]:
        smp = res["samples"][call]
        best = {lv: min(smp[lv]) for lv in cols}

        def ratio(a, b):  # median over rounds of the round's a / b: levels run back to back in each round
            return statistics.median(x / y for x, y in zip(smp[a], smp[b]))

        ratios = [f"{ratio(a, b):.2f}x" for a, b in zip(levels, levels[1:])]
        if "avx512-own" in cols:
            ratios.append(f"{ratio('avx2', 'avx512-own'):.2f}x")
        dflt = statistics.median(min(smp[lv][r] for lv in levels) / smp[default][r] for r in range(len(smp[default])))
        worst = min(worst, dflt)
        kern = " / ".join(res["ran"][lv].get(call) or kernel_for(res["names"][lv], call) for lv in levels)
        rows.append([call] + [f"{best[lv] * 1e3:.2f}" for lv in cols] + ratios + [f"{dflt:.2f}", kern])
    print_table(rows, header)
    print(f"\nlowest default/fastest: {worst:.2f} (target >= 0.95 for every family; both kernels are the same where "
          f"the names are: there the ratio measures the machine's noise)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 11, --quick 3)")
    ap.add_argument("--target", type=float, default=None, help="seconds per sample (default 0.05, --quick 0.02)")
    ap.add_argument("--json", default=None, help="write the raw samples here")
    args = ap.parse_args()
    args.rounds = args.rounds or (3 if args.quick else 11)
    args.target = args.target or (0.02 if args.quick else 0.05)
    res = run(args)
    report(res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
