#!/usr/bin/env python3
"""MaxSim throughput: simkern against maxsim-cpu, fast-maxsim, NumPy, PyLate-style torch and (approximate, labelled)
numkong, side by side.

    python bench/bench_maxsim.py                 # full run (a few minutes on 2 cores)
    python bench/bench_maxsim.py --quick         # smoke test: fewer docs, queries and rounds
    python bench/bench_maxsim.py --json out.json --threads 1,2

score(Q, D) = sum_i max_j <q_i, d_j>. Cases: uniform / variable / batch (synthetic), real (the dev token vectors,
all queries in one call) and real-single (the same, one query per call for every method: a reranker's shape; with
fast-maxsim, and numkong's maxsim_packed on docs packed ahead - an approximate angular score, timed but not
checked). Every case is timed once per thread configuration (default: 1 thread and
all CPUs of this process). Each configuration runs in its own child process of this script, started with the
thread variables set *before* anything is imported, because maxsim-cpu sizes its rayon pool (and libxsmm its
OpenMP pool) once per process from RAYON_NUM_THREADS / OMP_NUM_THREADS, and OpenBLAS reads
OPENBLAS_NUM_THREADS at load time. Inside a child every method runs with the same thread count:

    simkern       threads=T argument (and SIMKERN_NUM_THREADS=T)
    maxsim-cpu    RAYON_NUM_THREADS=T and OMP_NUM_THREADS=T in the child's environment
    NumPy         OPENBLAS_NUM_THREADS=T (also OMP/MKL_NUM_THREADS); OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are
                  removed from the child's environment (see --keep-openblas-env), and the OpenBLAS core it
                  then runs is recorded (threadpoolctl if installed, else OpenBLAS's own get_corename)
    torch         torch.set_num_threads(T), torch.set_num_interop_threads(1), OMP/MKL_NUM_THREADS=T

Within a child, methods are warmed up, checked once against simkern's float32 scores, then timed in >= 7
interleaved rounds (the order rotates every round); the table shows median and best. The sgemm peak (NumPy
2048^3 float32 matmul) is measured in the same run, in the 1-thread child.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import (  # noqa: E402
    OPENBLAS_TUNING_VARS,
    THREAD_VARS,
    add_common_args,
    blas_info,
    fmt_ms,
    fmt_rate,
    log,
    parse_threads,
    print_blas,
    print_load,
    print_table,
    run_children,
    run_worker,
    write_json,
)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "dev"))

RTOL = 1e-3            # agreement required with simkern's float32 scores
BF16_QUERY_RTOL = 1e-2  # ... by the AVX512-BF16 kernel, which also rounds the query to bf16 (2^-8 per product)
TORCH_CHUNK_BYTES = 256 << 20   # bound on the (a, b, s, t) einsum intermediate
SLEEP_BETWEEN = 0.01   # pause before each sample: spinning OpenMP / rayon workers of the previous method go idle
# OpenBLAS worker threads keep spinning (sched_yield) for 2**28 cycles (~0.1 s) after each call unless
# OPENBLAS_THREAD_TIMEOUT says otherwise; on 2 cores that slowed the method timed next (torch) up to 5x. So with
# more than one thread, a NumPy sample is followed by a longer pause instead of changing OpenBLAS's settings.
OPENBLAS_SETTLE = 0.25

CASES = ("uniform", "variable", "batch", "real", "real-single")
TARGET_PEAK = 85.0      # real-single, one thread: simkern f32 >= 85 % of the 1-thread sgemm peak
TARGET_VS_MXCPU = {"f32": 4.0, "f16": 4.0, "bf16": 8.0}  # and >= these x maxsim-cpu (bf16: where AVX512-BF16 exists)


# ----------------------------------------------------------------------------------------------- helpers

def make_cases(args, np, simkern, bf16):
    """Build every case's inputs once (nothing here is timed)."""
    rng = np.random.default_rng(args.seed)
    dim = 128

    def unit(shape):
        x = rng.standard_normal(shape, dtype=np.float32)
        x /= np.linalg.norm(x, axis=-1, keepdims=True)
        return x

    n_docs = 200 if args.quick else 1000
    n_batch = 4 if args.quick else 16
    wanted = args.cases
    cases = []

    uniform_docs = None
    if "uniform" in wanted or "batch" in wanted:
        uniform_docs = unit((n_docs, 180, dim))
    offs_u = np.arange(n_docs + 1, dtype=np.int64) * 180
    if "uniform" in wanted:
        cases.append(dict(key="uniform", title=f"synthetic uniform: 1 query (Lq=32) x {n_docs} docs x 180 tokens, "
                                                f"dim {dim}, L2-normalised",
                          queries=[unit((32, dim))], doc_tokens=uniform_docs.reshape(-1, dim), doc_offsets=offs_u,
                          uniform=True))
    if "variable" in wanted:
        lens = rng.integers(50, 301, size=n_docs)
        offs = np.zeros(n_docs + 1, dtype=np.int64)
        np.cumsum(lens, out=offs[1:])
        cases.append(dict(key="variable", title=f"synthetic variable: 1 query (Lq=32) x {n_docs} docs, Ld uniform "
                                                 f"in [50, 300] (mean {lens.mean():.0f}), dim {dim}",
                          queries=[unit((32, dim))], doc_tokens=unit((int(offs[-1]), dim)), doc_offsets=offs,
                          uniform=False))
    if "batch" in wanted:
        cases.append(dict(key="batch", title=f"synthetic batch: {n_batch} queries (Lq=32) x {n_docs} docs x 180 "
                                              f"tokens, dim {dim}",
                          queries=[unit((32, dim)) for _ in range(n_batch)], doc_tokens=uniform_docs.reshape(-1, dim),
                          doc_offsets=offs_u, uniform=True))
    if "real" in wanted or "real-single" in wanted:
        d = args.data
        need = ["mv_doc_tokens.npy", "mv_doc_offsets.npy", "mv_query_tokens.npy", "mv_query_offsets.npy"]
        if d and all(os.path.exists(os.path.join(d, f)) for f in need):
            dt = np.load(os.path.join(d, "mv_doc_tokens.npy"))
            do = np.load(os.path.join(d, "mv_doc_offsets.npy")).astype(np.int64)
            qt = np.load(os.path.join(d, "mv_query_tokens.npy"))
            qo = np.load(os.path.join(d, "mv_query_offsets.npy")).astype(np.int64)
            nq = min(args.real_queries if not args.quick else min(args.real_queries, 8), len(qo) - 1)
            nd = len(do) - 1 if not args.quick else min(500, len(do) - 1)
            do = do[:nd + 1]
            queries = [np.ascontiguousarray(qt[qo[i]:qo[i + 1]], dtype=np.float32) for i in range(nq)]
            lens = np.diff(do)
            shape = (f"first {nq} queries (Lq {min(len(q) for q in queries)}..{max(len(q) for q in queries)}, mean "
                     f"{np.mean([len(q) for q in queries]):.1f}) x {nd} docs (Ld {lens.min()}..{lens.max()}, mean "
                     f"{lens.mean():.1f}), dim {dt.shape[1]}, stored float16")
            tokens32 = np.ascontiguousarray(dt[:do[-1]]).astype(np.float32)
            for key in ("real", "real-single"):
                if key in wanted:
                    how = ("all queries in one call" if key == "real" else
                           "ONE query per call, the way a reranker calls it")
                    cases.append(dict(key=key, title=f"{key} ({os.path.basename(d)}): {shape}; {how}",
                                      queries=queries, doc_tokens=tokens32, doc_offsets=do, uniform=False,
                                      doc_tokens_f16=np.ascontiguousarray(dt[:do[-1]]), single=key == "real-single"))
        else:
            log(f"note: real case skipped: no mv_*.npy files in {d!r} (use --data DIR)")
    return cases


def build_methods(case, T, np, simkern, bf16, peers, notes):
    """Return [(name, dtype, fn)] where fn() -> float32/float64 scores (n_queries, n_docs)."""
    qs = case["queries"]
    tokens, offs = case["doc_tokens"], case["doc_offsets"]
    n_docs, dim = len(offs) - 1, tokens.shape[1]
    lens = np.diff(offs)
    Q = simkern.Ragged(np.ascontiguousarray(np.concatenate(qs)),
                       np.concatenate([[0], np.cumsum([len(q) for q in qs])]).astype(np.int64))
    D32 = simkern.Ragged(tokens, offs)
    f16_tokens = case.get("doc_tokens_f16")
    if f16_tokens is None:
        f16_tokens = tokens.astype(np.float16)
    D16 = simkern.Ragged(f16_tokens, offs)
    if case.get("single"):
        case["bf16_rounds_query"] = simkern.kernel_names()["maxsim"]["bfloat16"].endswith("_dpbf16")
        return single_query_methods(case, T, np, simkern, bf16, peers, notes, D32, D16)
    case["bf16_rounds_query"] = simkern.kernel_names()["maxsim"]["bfloat16"].endswith("_dpbf16")
    methods = [
        ("simkern", "f32", lambda: simkern.maxsim(Q, D32, threads=T)),
        ("simkern", "f16", lambda: simkern.maxsim(Q, D16, threads=T)),
    ]
    if bf16 is not None:
        Dbf = simkern.Ragged(tokens.astype(bf16), offs)
        methods.append(("simkern", "bf16", lambda: simkern.maxsim(Q, Dbf, threads=T)))
    else:
        notes.add("simkern bf16 row skipped: ml_dtypes not importable")
    k = min(10, n_docs)
    methods.append((f"simkern top{k}", "f32", lambda: simkern.maxsim_topk(Q, D32, k, threads=T)))

    # Padded copy for the padded peers: pad each doc with copies of its own last token, which leaves every
    # max_j <q_i, d_j> unchanged (no mask needed, exact).
    lmax = int(lens.max())
    if case["uniform"]:
        padded = tokens.reshape(n_docs, lmax, dim)
    else:
        idx = np.minimum(np.arange(lmax)[None, :], lens[:, None] - 1) + offs[:-1, None]
        padded = tokens[idx]                      # (n_docs, lmax, dim), one copy
    doc_list = [tokens[offs[i]:offs[i + 1]] for i in range(n_docs)]   # contiguous row views, no copy

    mc = peers.get("maxsim_cpu")
    if mc is not None:
        if case["uniform"]:
            methods.append(("maxsim-cpu", "f32", lambda: np.stack([mc.maxsim_scores(q, padded) for q in qs])))
        else:
            methods.append(("maxsim-cpu", "f32",
                            lambda: np.stack([mc.maxsim_scores_variable(q, doc_list) for q in qs])))

    def np_batched():
        return np.stack([(padded @ q.T).max(axis=1).sum(axis=1) for q in qs])

    starts = offs[:-1]

    def np_flat():
        return np.stack([np.maximum.reduceat(tokens @ q.T, starts, axis=0).sum(axis=1) for q in qs])

    methods.append(("numpy batched", "f32", np_batched))
    if (lens > 0).all():
        methods.append(("numpy flat+reduceat", "f32", np_flat))

    torch = peers.get("torch")
    if torch is not None:
        lq = max(len(q) for q in qs)
        qpad = np.zeros((len(qs), lq, dim), np.float32)     # zero query rows add max_j 0 = 0: exact
        for i, q in enumerate(qs):
            qpad[i, :len(q)] = q
        tq, td = torch.from_numpy(qpad), torch.from_numpy(np.ascontiguousarray(padded))
        chunk = max(1, TORCH_CHUNK_BYTES // (len(qs) * lq * lmax * 4))

        def pylate():
            with torch.inference_mode():
                parts = [torch.einsum("ash,bth->abst", tq, td[b:b + chunk]).max(axis=3).values.sum(axis=2)
                         for b in range(0, n_docs, chunk)]
                return torch.cat(parts, dim=1).numpy()
        methods.append(("torch einsum (PyLate)", "f32", pylate))
    return methods


def single_query_methods(case, T, np, simkern, bf16, peers, notes, D32, D16):
    """real-single: every method scores the queries one call per query (nothing is batched across queries)."""
    qs, tokens, offs = case["queries"], case["doc_tokens"], case["doc_offsets"]
    doc_list = [tokens[offs[i]:offs[i + 1]] for i in range(len(offs) - 1)]

    def per_query(score):
        return lambda: np.stack([score(q) for q in qs])

    methods = [("simkern", "f32", per_query(lambda q: simkern.maxsim([q], D32, threads=T)[0])),
               ("simkern", "f16", per_query(lambda q: simkern.maxsim([q], D16, threads=T)[0]))]
    if bf16 is not None:
        Dbf = simkern.Ragged(tokens.astype(bf16), offs)
        methods.append(("simkern", "bf16", per_query(lambda q: simkern.maxsim([q], Dbf, threads=T)[0])))
    for name, key in (("maxsim-cpu", "maxsim_cpu"), ("fast-maxsim", "fast_maxsim")):
        mod = peers.get(key)
        if mod is not None:
            methods.append((name, "f32", per_query(lambda q, mod=mod: mod.maxsim_scores_variable(q, doc_list))))
    starts = offs[:-1]
    methods.append(("numpy flat+reduceat", "f32",
                    per_query(lambda q: np.maximum.reduceat(tokens @ q.T, starts, axis=0).sum(axis=1))))
    nk = peers.get("numkong")
    if nk is not None:  # docs packed ahead (not timed); its score is an angular distance, not the dot MaxSim
        packed_docs = [nk.maxsim_pack(d) for d in doc_list]
        methods.append(("numkong maxsim_packed (APPROX., angular)", "f32",
                        per_query(lambda q: (lambda pq: np.array([nk.maxsim_packed(pq, p) for p in packed_docs]))(
                            nk.maxsim_pack(q)))))
    return methods


def verify(case, name, dtype, out, ref32, refs_lowp, np):
    """Max relative error vs simkern's float32 scores (per element, relative to max(|ref|, 1)); None for an
    approximate peer that computes another score (not checked)."""
    if "APPROX" in name:
        return None
    if name.startswith("simkern top"):
        scores, ids = out
        k = scores.shape[1]
        want = -np.sort(-ref32, axis=1)[:, :k]
        got_at_ids = np.take_along_axis(ref32, ids, axis=1)
        err = max(np.max(np.abs(scores - want) / np.maximum(np.abs(want), 1)),
                  np.max(np.abs(got_at_ids - scores) / np.maximum(np.abs(scores), 1)))
        return float(err)
    ref = refs_lowp.get(dtype, ref32)
    out = np.asarray(out, dtype=np.float64).reshape(ref.shape)
    err = float(np.max(np.abs(out - ref) / np.maximum(np.abs(ref), 1)))
    if name == "simkern" and dtype == "bf16" and case.get("bf16_rounds_query"):
        err *= RTOL / BF16_QUERY_RTOL  # the vdpbf16ps kernel rounds the query to bf16 too: checked at 1e-2
    return err


def time_case(case, methods, T, rounds, target, np, simkern, bf16, interleave_ref=None):
    """Warm up + verify each method, then interleave all methods for `rounds` rounds."""
    qs, tokens, offs = case["queries"], case["doc_tokens"], case["doc_offsets"]
    ref32 = None
    refs_lowp = {}
    results = []
    for name, dtype, fn in methods:
        time.sleep(OPENBLAS_SETTLE if T > 1 and results and results[-1]["method"].startswith("numpy")
                   else SLEEP_BETWEEN)
        t0 = time.perf_counter()
        out = fn()
        t_warm = time.perf_counter() - t0
        if ref32 is None:                       # methods[0] is simkern f32
            ref32 = np.asarray(out, dtype=np.float64)
            Q = simkern.Ragged(np.concatenate(qs), np.concatenate([[0], np.cumsum([len(q) for q in qs])]))
            f16 = case.get("doc_tokens_f16")
            f16 = tokens.astype(np.float16) if f16 is None else f16
            refs_lowp["f16"] = simkern.maxsim(Q, simkern.Ragged(f16.astype(np.float32), offs)).astype(np.float64)
            if bf16 is not None:
                refs_lowp["bf16"] = simkern.maxsim(
                    Q, simkern.Ragged(tokens.astype(bf16).astype(np.float32), offs)).astype(np.float64)
        t0 = time.perf_counter()
        fn()                                    # second warm-up call, used for calibration
        t_warm = min(t_warm, time.perf_counter() - t0)
        err = verify(case, name, dtype, out, ref32, refs_lowp, np)
        reps = max(1, int(round(target / max(t_warm, 1e-6))))
        results.append(dict(method=name, dtype=dtype, threads=T, reps=reps, max_rel_err=err,
                            ok=err is None or err <= RTOL, ref=not results, samples=[]))
    order = list(range(len(methods)))
    for r in range(rounds):
        rot = order[r % len(order):] + order[:r % len(order)]
        for i in rot:
            fn, res = methods[i][2], results[i]
            time.sleep(SLEEP_BETWEEN)
            t0 = time.perf_counter()
            for _ in range(res["reps"]):
                fn()
            res["samples"].append((time.perf_counter() - t0) / res["reps"])
            if T > 1 and res["method"].startswith("numpy"):
                time.sleep(OPENBLAS_SETTLE)
    for res in results:
        s = sorted(res["samples"])
        res["median_s"] = s[len(s) // 2] if len(s) % 2 else 0.5 * (s[len(s) // 2 - 1] + s[len(s) // 2])
        res["best_s"] = s[0]
    return results


def sgemm_gflops(np, reps: int) -> float:
    n = 2048
    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    np.matmul(a, b, out=c)
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def worker(args) -> None:
    T = args.worker
    for v in ("RAYON_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        if os.environ.get(v) != str(T):
            log(f"warning: worker for {T} thread(s) started with {v}={os.environ.get(v)!r}; "
                f"run the script without --worker so the children get the right environment")
    import numpy as np
    import simkern
    try:
        import ml_dtypes
        bf16 = ml_dtypes.bfloat16
    except ImportError:
        bf16 = None
    notes = set()
    peers = {}
    for key, dist in (("maxsim_cpu", "maxsim-cpu"), ("fast_maxsim", "fast-maxsim"), ("numkong", "numkong")):
        try:
            peers[key] = __import__(key)
        except ImportError as e:
            notes.add(f"{dist} skipped (ImportError: {e}); pip install {dist}")
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(T)
            try:
                torch.set_num_interop_threads(1)
            except RuntimeError:
                pass
            peers["torch"] = torch
        except ImportError as e:
            notes.add(f"torch einsum (PyLate-style) skipped (ImportError: {e})")

    out = dict(threads=T, notes=[], cases={}, env={v: os.environ.get(v) for v in THREAD_VARS + OPENBLAS_TUNING_VARS})
    out["sgemm_gflops"] = sgemm_gflops(np, 3 if args.quick else 5)
    out["blas"] = blas_info()
    if "torch" in peers:
        out["torch"] = dict(version=peers["torch"].__version__, num_threads=peers["torch"].get_num_threads())
    if "maxsim_cpu" in peers:
        try:
            from importlib.metadata import version
            out["maxsim_cpu_version"] = version("maxsim-cpu")
        except Exception:
            pass
    if args.peak_only:
        out["notes"] = sorted(notes)
        with open(args.worker_out, "w") as f:
            json.dump(out, f)
        return
    out["simkern_kernels"] = simkern.kernel_names()
    out["simkern_isa"] = simkern.active_isa()
    rounds = args.rounds if args.rounds else (3 if args.quick else 7)
    target = 0.02 if args.quick else 0.05
    for case in make_cases(args, np, simkern, bf16):
        log(f"[{T} thread(s)] {case['key']}: building inputs")
        methods = build_methods(case, T, np, simkern, bf16, peers, notes)
        log(f"[{T} thread(s)] {case['key']}: warm-up, check, {rounds} interleaved rounds of {len(methods)} methods")
        t0 = time.perf_counter()
        res = time_case(case, methods, T, rounds, target, np, simkern, bf16)
        lq_sum = sum(len(q) for q in case["queries"])
        ld_sum = int(case["doc_offsets"][-1])
        dim = case["doc_tokens"].shape[1]
        meta = dict(title=case["title"], n_queries=len(case["queries"]), n_docs=len(case["doc_offsets"]) - 1,
                    pairs=len(case["queries"]) * (len(case["doc_offsets"]) - 1),
                    flops=2.0 * dim * lq_sum * ld_sum, rounds=rounds)
        # Thread scaling of simkern measured in-process: threads=1 interleaved with threads=T.
        if T > 1:
            qs, tokens, offs = case["queries"], case["doc_tokens"], case["doc_offsets"]
            Q = simkern.Ragged(np.concatenate(qs), np.concatenate([[0], np.cumsum([len(q) for q in qs])]))
            D = simkern.Ragged(tokens, offs)
            pair = [("simkern", "f32", lambda Q=Q, D=D: simkern.maxsim(Q, D, threads=1)),
                    ("simkern", "f32", lambda Q=Q, D=D: simkern.maxsim(Q, D, threads=T))]
            r2 = time_case(case, pair, T, rounds, target, np, simkern, bf16)
            meta["simkern_inprocess_speedup"] = r2[0]["median_s"] / r2[1]["median_s"]
            meta["simkern_inprocess_samples_s"] = {"1": r2[0]["samples"], str(T): r2[1]["samples"]}
        log(f"[{T} thread(s)] {case['key']}: done in {time.perf_counter() - t0:.1f} s")
        out["cases"][case["key"]] = dict(meta=meta, results=res)
    out["notes"] = sorted(notes)
    with open(args.worker_out, "w") as f:
        json.dump(out, f)


# ------------------------------------------------------------------------------------------ orchestrator

def run_child(T: int, args, peak_only: bool = False) -> dict:
    extra = ["--seed", str(args.seed), "--real-queries", str(args.real_queries), "--cases", ",".join(args.cases),
             "--data", args.data or ""]
    if args.quick:
        extra.append("--quick")
    if args.rounds:
        extra += ["--rounds", str(args.rounds)]
    if args.no_torch:
        extra.append("--no-torch")
    if peak_only:
        extra.append("--peak-only")
    return run_worker(__file__, T, extra, args.keep_openblas_env)


def report(workers: dict[int, dict], peak1: float) -> dict:
    """Print one table per case and return the derived numbers (also stored in --json)."""
    summary = {}
    keys = []
    for w in workers.values():
        for k in w["cases"]:
            if k not in keys:
                keys.append(k)
    for key in keys:
        meta = next(w["cases"][key]["meta"] for w in workers.values() if key in w["cases"])
        print()
        print(f"== {key}: {meta['title']}")
        print(f"   {meta['pairs']} (query, doc) pairs, {meta['flops'] / 1e9:.3g} GFLOP useful work per pass, "
              f"{meta['rounds']} rounds")
        rows, derived = [], []
        by_thr = {T: {(r["method"], r["dtype"]): r for r in w["cases"][key]["results"]}
                  for T, w in workers.items() if key in w["cases"]}
        base_T = min(by_thr)
        for T, w in sorted(workers.items()):
            if key not in w["cases"]:
                continue
            res = w["cases"][key]["results"]
            mc = by_thr[T].get(("maxsim-cpu", "f32"))
            nps = [r["median_s"] for r in res if r["method"].startswith("numpy")]
            np_best = min(nps) if nps else None
            for r in res:
                med, best = r["median_s"], r["best_s"]
                gflops = meta["flops"] / med / 1e9
                d = dict(method=r["method"], dtype=r["dtype"], threads=T, median_ms=med * 1e3, best_ms=best * 1e3,
                         pairs_per_s=meta["pairs"] / med, gflops=gflops,
                         pct_peak=100 * gflops / (peak1 * T) if peak1 else None,
                         vs_maxsim_cpu=mc["median_s"] / med if mc else None,
                         vs_numpy=np_best / med if np_best else None,
                         speedup_vs_base=None, max_rel_err=r["max_rel_err"], ok=r["ok"])
                b = by_thr[base_T].get((r["method"], r["dtype"]))
                if T != base_T and b:
                    d["speedup_vs_base"] = b["median_s"] / med
                derived.append(d)
                rows.append([r["method"], r["dtype"], T, fmt_ms(med), fmt_ms(best), fmt_rate(d["pairs_per_s"]),
                             f"{gflops:.1f}", f"{d['pct_peak']:.0f}%" if d["pct_peak"] is not None else "-",
                             f"{d['vs_maxsim_cpu']:.2f}x" if d["vs_maxsim_cpu"] else "-",
                             f"{d['vs_numpy']:.2f}x" if d["vs_numpy"] else "-",
                             f"{d['speedup_vs_base']:.2f}x" if d["speedup_vs_base"] else "-",
                             "ref" if r.get("ref") else "not comparable" if r["max_rel_err"] is None else
                             f"ok {r['max_rel_err']:.0e}" if r["ok"] else f"WARN {r['max_rel_err']:.1e}"])
        print_table(rows, ["method", "dtype", "thr", "med ms", "best ms", "pairs/s", "GFLOP/s", "%peak",
                           "vs mxcpu", "vs numpy", f"vs {base_T}T", "check"])
        bad = [d for d in derived if not d["ok"]]
        for d in bad:
            print(f"   WARNING: {d['method']} {d['dtype']} ({d['threads']}T) disagrees with simkern float32: max "
                  f"relative error {d['max_rel_err']:.2e} > {RTOL:g}")
        if key == "real-single" and 1 in by_thr:
            for d in derived:
                if d["method"] != "simkern" or d["threads"] != 1:
                    continue
                if d["dtype"] == "f32" and d["pct_peak"] is not None:
                    print(f"   target (1T) simkern f32 one query per call: {d['pct_peak']:.0f}% of the sgemm peak "
                          f"(target >= {TARGET_PEAK:.0f}%) {'MET' if d['pct_peak'] >= TARGET_PEAK else 'NOT MET'}")
                want = TARGET_VS_MXCPU[d["dtype"]]
                if d["vs_maxsim_cpu"]:
                    print(f"   target (1T) simkern {d['dtype']} vs maxsim-cpu: {d['vs_maxsim_cpu']:.2f}x (target >= "
                          f"{want:g}x) {'MET' if d['vs_maxsim_cpu'] >= want else 'NOT MET'}")
        for T, w in sorted(workers.items()):
            sp = w["cases"].get(key, {}).get("meta", {}).get("simkern_inprocess_speedup")
            if sp:
                print(f"   simkern f32 {T}T vs 1T, interleaved in one process: {sp:.2f}x")
        summary[key] = dict(meta=meta, rows=derived)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test: fewer docs/queries, 3 rounds")
    ap.add_argument("--threads", default="1,all", help="comma list of thread counts, 'all' = CPUs of this "
                                                      "process (default: 1,all)")
    ap.add_argument("--rounds", type=int, default=0, help="interleaved timing rounds (default 7, --quick 3)")
    ap.add_argument("--cases", default=",".join(CASES), help=f"subset of {','.join(CASES)}")
    ap.add_argument("--data", default=DEFAULT_DATA, help="folder with mv_*.npy for the real case "
                                                        "(default: ../shared/data/dev from the repo root)")
    ap.add_argument("--real-queries", type=int, default=16, help="queries of the real case (default 16)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-torch", action="store_true", help="skip the torch einsum peer")
    add_common_args(ap)
    ap.add_argument("--peak-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in args.cases:
        if c not in CASES:
            raise SystemExit(f"--cases: unknown case {c!r} (choose from {', '.join(CASES)})")
    if args.rounds and args.rounds < 1:
        raise SystemExit("--rounds must be >= 1")
    if args.worker is not None:
        worker(args)
        return

    threads = parse_threads(args.threads)
    workers, busy = run_children(threads, lambda T: run_child(T, args))
    if 1 in workers:
        peak1 = workers[1]["sgemm_gflops"]
    else:
        log("--- child process for the 1-thread sgemm peak")
        peak1 = run_child(1, args, peak_only=True)["sgemm_gflops"]

    print()
    print(f"sgemm peak (NumPy float32 2048^3 matmul, best of {3 if args.quick else 5}): 1 thread {peak1:.1f} GFLOP/s"
          + "".join(f"; {T} threads {w['sgemm_gflops']:.1f} GFLOP/s" for T, w in workers.items() if T != 1))
    w0 = next(iter(workers.values()))
    print_blas(workers, args.keep_openblas_env)
    if "torch" in w0:
        print(f"torch     : {w0['torch']['version']}, set_num_threads(T) per child")
    if "maxsim_cpu_version" in w0:
        print(f"maxsim-cpu: {w0['maxsim_cpu_version']}, RAYON_NUM_THREADS=OMP_NUM_THREADS=T per child")
    for n in sorted({n for w in workers.values() for n in w["notes"]}):
        print(f"note      : {n}")
    print("Columns: median/best ms per call; pairs/s = (query, doc) pairs per second at the median (= docs/s for "
          "one query);\n  GFLOP/s = 2*Lq*Ld*dim per pair (real tokens only, padding not counted) / median; "
          "%peak = GFLOP/s / (threads x 1-thread sgemm);\n  vs mxcpu / vs numpy = that peer's median / this "
          "row's median at the same thread count (>1: this row is faster; numpy = faster of the two NumPy "
          "variants);\n  vs 1T = the same method's 1-thread median / this median; check = max relative error vs "
          "simkern float32 (f16/bf16 rows: vs float32 scoring of the same rounded docs).")
    print_load(busy, workers)
    summary = report(workers, peak1)
    write_json(args.json, threads, args.quick, busy, workers, sgemm_peak_1t_gflops=peak1, summary=summary)


if __name__ == "__main__":
    main()
