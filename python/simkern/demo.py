"""``python -m simkern demo``: run each kernel family on the embedded dataset and print a table.

For every kernel: ISA, dtype, threads, time (best of several runs), throughput, the NumPy baseline time, the
speed ratio, and an accuracy check against a float64 NumPy reference.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np
import numpy.typing as npt

from . import maxsim, maxsim_topk, runtime
from .datasets import load_demo_tokens
from .fde import FDE
from .hnsw import HNSWIndex
from .ivfpq_index import IVFPQIndex
from .pq_index import PQIndex
from .ragged import Ragged


def _best_time(fn: Callable[..., object], repeats: int, warmup: bool = True) -> float:
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _tile(r: Ragged, copies: int) -> Ragged:
    """The same sets repeated `copies` times (a bigger collection for timing)."""
    tokens = np.concatenate([r.tokens] * copies)
    lengths = np.tile(r.lengths, copies)
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Ragged(tokens, offsets)


def _numpy_maxsim(q: Ragged, d: Ragged) -> npt.NDArray[np.float32]:
    """NumPy baseline: one flat GEMM per query, then a segmented max (maximum.reduceat) and a sum."""
    starts = d.offsets[:-1]
    out = np.empty((len(q), len(d)), np.float32)
    for i in range(len(q)):
        sim = d.tokens @ q[i].T  # (total_doc_tokens, Lq)
        out[i] = np.maximum.reduceat(sim, starts, axis=0).sum(axis=1)
    return out


def _reference(q: Ragged, d: Ragged) -> npt.NDArray[np.float64]:
    d64 = d.tokens.astype(np.float64)
    starts = d.offsets[:-1]
    return np.stack([np.maximum.reduceat(d64 @ q[i].astype(np.float64).T, starts, axis=0).sum(axis=1)
                     for i in range(len(q))])


def run_maxsim_rows(repeats: int, copies: int, threads: int) -> list[dict[str, Any]]:
    data = load_demo_tokens()
    q = Ragged(data["queries"].tokens.astype(np.float32), data["queries"].offsets)
    docs16 = _tile(data["docs"], copies)
    docs32 = Ragged(docs16.tokens.astype(np.float32), docs16.offsets)
    docs_bf16 = Ragged(docs32.tokens.astype(ml_dtypes.bfloat16), docs32.offsets)
    ref = _reference(q, docs32)
    ref_top10 = np.argsort(-ref, axis=1, kind="stable")[:, :10]
    pairs = len(q) * len(docs32)
    flops = 2.0 * float((q.lengths[:, None] * docs32.lengths[None, :]).sum()) * q.dim
    t_numpy = _best_time(lambda: _numpy_maxsim(q, docs32), repeats)

    rows = []
    variants = [("float32", docs32), ("float16", docs16), ("bfloat16", docs_bf16)]
    for isa in runtime.available_isas():
        with runtime.max_isa(isa):
            # The scalar level is the portable reference path: one row, timed once, to keep the demo short.
            scalar = isa == "scalar"
            for dtype_name, docs in variants[:1] if scalar else variants:
                for n_threads in [threads] if scalar else sorted({1, threads}):
                    got = maxsim(q, docs, threads=n_threads)
                    t = _best_time(lambda: maxsim(q, docs, threads=n_threads), 1 if scalar else repeats, warmup=False)
                    # Rounding of the doc dtype is part of the data, so compare with its widened float64 values.
                    exact = ref if dtype_name == "float32" else _reference(q, Ragged(docs.tokens.astype(np.float64),
                                                                                      docs.offsets))
                    rel = float(np.max(np.abs(got - exact) / np.maximum(np.abs(exact), 1.0)))
                    rows.append(dict(kernel="maxsim", isa=isa, dtype=dtype_name, threads=n_threads, seconds=t,
                                     rate=f"{pairs / t / 1e3:8.1f}k pairs/s", gflops=flops / t / 1e9,
                                     numpy_ratio=t_numpy / t, check=f"rel err {rel:.1e}"))
            if scalar:
                continue
            _, ids = maxsim_topk(q, docs32, 10, threads=threads)
            t = _best_time(lambda: maxsim_topk(q, docs32, 10, threads=threads), repeats)
            agree = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, ref_top10)]))
            rows.append(dict(kernel="maxsim_topk k=10", isa=isa, dtype="float32", threads=threads, seconds=t,
                             rate=f"{pairs / t / 1e3:8.1f}k pairs/s", gflops=flops / t / 1e9,
                             numpy_ratio=t_numpy / t, check=f"top10 = ref {agree:.0%}"))
    rows.insert(0, dict(kernel="numpy GEMM+reduceat", isa="(BLAS)", dtype="float32", threads=0, seconds=t_numpy,
                        rate=f"{pairs / t_numpy / 1e3:8.1f}k pairs/s", gflops=flops / t_numpy / 1e9, numpy_ratio=1.0,
                        check="baseline"))
    return rows


def run_pq_rows(repeats: int, threads: int) -> list[dict[str, Any]]:
    """Product quantization on the demo doc tokens (as single vectors): train, encode, search vs NumPy."""
    data = load_demo_tokens()
    base = data["docs"].tokens.astype(np.float32)      # (11194, 128)
    queries = data["queries"].tokens.astype(np.float32)[:200]
    exact = ((queries[:, None, :] - base[None]) ** 2).sum(axis=2)
    gt = np.argsort(exact, axis=1, kind="stable")[:, :10]
    rows = []
    t0 = time.perf_counter()
    index = PQIndex(128, 16, 8, "l2").train(base, iters=10, threads=threads)
    rows.append(dict(kernel="pq train m16x8", isa=runtime.active_isa(), dtype="float32", threads=threads,
                     seconds=time.perf_counter() - t0, rate=f"{len(base) / 1e3:8.1f}k vectors", gflops=0.0,
                     numpy_ratio=float("nan"), check="10 k-means iters"))
    t_enc = _best_time(lambda: index.pq.encode(base, threads=threads), repeats)
    index.add(base, threads=threads)
    rows.append(dict(kernel="pq encode", isa=runtime.active_isa(), dtype="float32", threads=threads, seconds=t_enc,
                     rate=f"{len(base) / t_enc / 1e6:8.2f}M vec/s", gflops=0.0, numpy_ratio=float("nan"),
                     check="codes identical on every ISA"))
    codes = index._codes
    books = index.pq.codebooks.astype(np.float32)

    def numpy_search() -> npt.NDArray[np.intp]:
        tables = ((queries.reshape(-1, 16, 1, 8) - books[None]) ** 2).sum(axis=3)   # (nq, 16, 256)
        adc = tables[:, np.arange(16)[None, :], codes].sum(axis=2)                     # (nq, n)
        return np.argpartition(adc, 10, axis=1)[:, :10]

    t_np = _best_time(numpy_search, repeats)
    for n_threads in sorted({1, threads}):
        t = _best_time(lambda: index.search(queries, 10, threads=n_threads), repeats)
        _, ids = index.search(queries, 10, threads=n_threads)
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, gt)]))
        rows.append(dict(kernel="PQIndex.search k=10", isa=runtime.active_isa(), dtype="float32",
                         threads=n_threads, seconds=t, rate=f"{len(queries) * len(base) / t / 1e6:8.1f}M codes/s",
                         gflops=0.0, numpy_ratio=t_np / t, check=f"recall@10 {recall:.2f} (exact float ADC)"))
    # IVF-PQ over the same vectors: 64 cells, 8 probed (an eighth of the codes scanned per query)
    ivf = IVFPQIndex(128, 64, 16, 8, "l2").train(base, iters=10, threads=threads)
    ivf.add(base, threads=threads)
    for n_threads in sorted({1, threads}):
        t = _best_time(lambda: ivf.search(queries, 10, nprobe=8, threads=n_threads), repeats)
        _, ids = ivf.search(queries, 10, nprobe=8, threads=n_threads)
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, gt)]))
        rows.append(dict(kernel="IVFPQ search np=8", isa=runtime.active_isa(), dtype="float32",
                         threads=n_threads, seconds=t, rate=f"{len(queries) / t / 1e3:8.1f}k queries/s",
                         gflops=0.0, numpy_ratio=t_np / t, check=f"recall@10 {recall:.2f} (exact ADC, 8/64 cells)"))
    return rows


def run_fde_rows(repeats: int, copies: int, threads: int) -> list[dict[str, Any]]:
    """MUVERA FDE (R=20, k=5, AMS 16) of the demo docs and queries; check: how well FDE inner products rank the
    docs like exact MaxSim (Spearman correlation, and MaxSim's best doc within the FDE top 10)."""
    data = load_demo_tokens()
    q = Ragged(data["queries"].tokens.astype(np.float32), data["queries"].offsets)
    d = _tile(Ragged(data["docs"].tokens.astype(np.float32), data["docs"].offsets), copies)
    fde = FDE(q.dim, num_repetitions=20, num_simhash_projections=5, projection_dimension=16)
    exact = maxsim(q, d[:len(data["docs"])], threads=threads)
    approx = fde.encode_queries(q) @ fde.encode_documents(d[:len(data["docs"])]).T

    def ranks(a: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
        return np.argsort(np.argsort(a))
    rho = float(np.mean([np.corrcoef(ranks(a), ranks(e))[0, 1] for a, e in zip(approx, exact)]))
    hit = float(np.mean([e.argmax() in np.argsort(-a)[:10] for a, e in zip(approx, exact)]))
    rows = []
    for n_threads in sorted({1, threads}):
        t = _best_time(lambda nt=n_threads: fde.encode_documents(d, threads=nt), repeats)
        rows.append(dict(kernel="fde encode docs", isa=runtime.active_isa(), dtype="float32", threads=n_threads,
                         seconds=t, rate=f"{len(d) / t / 1e3:8.1f}k docs/s", gflops=0.0, numpy_ratio=float("nan"),
                         check=f"rank corr vs maxsim {rho:.2f}"))
    t = _best_time(lambda: fde.encode_queries(q, threads=threads), repeats)
    rows.append(dict(kernel="fde encode queries", isa=runtime.active_isa(), dtype="float32", threads=threads,
                     seconds=t, rate=f"{len(q) / t / 1e3:8.1f}k q/s", gflops=0.0, numpy_ratio=float("nan"),
                     check=f"maxsim top-1 in fde top-10 {hit:.0%}"))
    return rows


def run_hnsw_rows(repeats: int, threads: int) -> list[dict[str, Any]]:
    """HNSW over the demo doc tokens as single vectors (11k x 128, inner product): build, then search 200 query
    tokens at ef=64 against NumPy brute force (one GEMM + argpartition); check: recall@10."""
    data = load_demo_tokens()
    base = data["docs"].tokens.astype(np.float32)
    queries = data["queries"].tokens.astype(np.float32)[:200]
    gt = np.argsort(-(queries @ base.T), axis=1, kind="stable")[:, :10]
    rows = []
    t0 = time.perf_counter()
    index = HNSWIndex(base.shape[1], metric="ip", M=16, ef_construction=100, seed=0)
    index.add(base, threads=threads)
    rows.append(dict(kernel="hnsw build M16", isa=runtime.active_isa(), dtype="float32", threads=threads,
                     seconds=time.perf_counter() - t0, rate=f"{len(base) / 1e3:8.1f}k vectors", gflops=0.0,
                     numpy_ratio=float("nan"), check="ef_construction 100"))

    def numpy_search() -> npt.NDArray[np.intp]:
        return np.argpartition(-(queries @ base.T), 10, axis=1)[:, :10]

    t_np = _best_time(numpy_search, repeats)
    for n_threads in sorted({1, threads}):
        t = _best_time(lambda nt=n_threads: index.search(queries, 10, ef=64, threads=nt), repeats)
        _, ids = index.search(queries, 10, ef=64, threads=n_threads)
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, gt)]))
        rows.append(dict(kernel="HNSWIndex.search", isa=runtime.active_isa(), dtype="float32", threads=n_threads,
                         seconds=t, rate=f"{len(queries) / t / 1e3:8.1f}k q/s", gflops=0.0, numpy_ratio=t_np / t,
                         check=f"recall@10 {recall:.3f} (ef=64)"))
    return rows


def run_lstsq_rows(repeats: int, threads: int) -> list[dict[str, Any]]:
    """Sketched least squares on a seeded tall Gaussian problem (2^16 x 64, b = A x0 + noise) against NumPy's
    lstsq (LAPACK gelsd); checks: the achieved l_inf eps against the reported bound, the preconditioned error."""
    from ._sketch import lstsq_sketched
    rng = np.random.default_rng(0)
    n, d = 2**16, 64
    a = rng.standard_normal((n, d))
    b = a @ rng.standard_normal(d) + rng.standard_normal(n)
    t_np = _best_time(lambda: np.linalg.lstsq(a, b, rcond=None), max(1, repeats // 2))
    x_star = np.linalg.lstsq(a, b, rcond=None)[0]
    scale = np.linalg.norm(a @ x_star - b) / np.sqrt(np.linalg.eigvalsh(a.T @ a)[0]) / np.sqrt(d)
    rows = []
    for method, m in (("solve", 16 * d), ("precondition", 4 * d)):
        t = _best_time(lambda: lstsq_sketched(a, b, m=m, method=method, threads=threads), repeats)
        res = lstsq_sketched(a, b, m=m, method=method, threads=threads)
        err = float(np.abs(res.x - x_star).max())
        check = (f"eps {err / scale:.2f} <= bound {res.eps_bound:.2f}" if method == "solve" else
                 f"|x-x*|/|x*| {err / np.abs(x_star).max():.1e}, {res.iterations} it")
        rows.append(dict(kernel="lstsq sketch+solve" if method == "solve" else "lstsq sketch+precond",
                         isa=runtime.active_isa(), dtype="float64",
                         threads=threads, seconds=t, rate=f"m={m} srht", gflops=0.0, numpy_ratio=t_np / t,
                         check=check))
    return rows


def run_multivector_rows(repeats: int, threads: int) -> list[dict[str, Any]]:
    """MultiVectorIndex (paper FDE + HNSW, float16 tokens) over the 128 demo docs; 32 queries, k=10, 50 candidates;
    baseline: brute-force maxsim_topk over every doc; check: recall@10 of the exact MaxSim top-10."""
    from .multivector import MultiVectorIndex
    data = load_demo_tokens()
    docs, q16 = data["docs"], data["queries"]
    docs32 = Ragged(docs.tokens.astype(np.float32), docs.offsets)
    queries = Ragged(q16.tokens.astype(np.float32), q16.offsets)
    t0 = time.perf_counter()
    index = MultiVectorIndex(docs.dim, ann="hnsw", candidates=50, storage="float16")
    index.add(docs32, threads=threads)
    t_build = time.perf_counter() - t0
    exact = maxsim_topk(queries, docs32, 10, threads=threads)[1]
    t_bf = _best_time(lambda: maxsim_topk(queries, docs32, 10, threads=threads), repeats)
    t = _best_time(lambda: index.search(queries, 10, threads=threads), repeats)
    ids = index.search(queries, 10, threads=threads)[1]
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)]))
    return [dict(kernel="multivector build", isa=runtime.active_isa(), dtype="float16", threads=threads,
                 seconds=t_build, rate=f"{len(docs)} docs", gflops=0.0, numpy_ratio=float("nan"),
                 check="FDE 10240-d + HNSW"),
            dict(kernel="multivector search", isa=runtime.active_isa(), dtype="float16", threads=threads,
                 seconds=t, rate=f"{len(queries) / t / 1e3:8.1f}k q/s", gflops=0.0, numpy_ratio=t_bf / t,
                 check=f"recall@10 {recall:.3f} (50 cand.)")]


def print_table(rows: list[dict[str, Any]]) -> None:
    header = f"{'kernel':<20} {'isa':<7} {'dtype':<9} {'thr':>3} {'time ms':>9} {'throughput':>20} {'GFLOP/s':>8} " \
             f"{'vs numpy':>8}  check"
    print(header)
    print("-" * len(header))
    for r in rows:
        threads = "-" if r["threads"] == 0 else str(r["threads"])
        gflops = f"{r['gflops']:8.1f}" if r["gflops"] else f"{'-':>8}"
        ratio = f"{r['numpy_ratio']:7.2f}x" if r["numpy_ratio"] == r["numpy_ratio"] else f"{'-':>8}"
        print(f"{r['kernel']:<20} {r['isa']:<7} {r['dtype']:<9} {threads:>3} {r['seconds'] * 1e3:9.2f} {r['rate']:>20} "
              f"{gflops} {ratio}  {r['check']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simkern demo", description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row (best is reported)")
    parser.add_argument("--copies", type=int, default=8, help="repeat the 128 demo docs this many times")
    parser.add_argument("--threads", type=int, default=runtime.get_num_threads(), help="threads for the batch rows")
    args = parser.parse_args(argv)
    runtime.show_runtime()
    data = load_demo_tokens()
    print(f"\nDemo data: {len(data['queries'])} queries, {len(data['docs'])} docs x {args.copies} copies, "
          f"dim {data['docs'].dim} (all-MiniLM-L6-v2 token vectors, PCA to 128-d)\n")
    print_table(run_maxsim_rows(args.repeats, args.copies, args.threads) + run_pq_rows(args.repeats, args.threads)
                + run_fde_rows(args.repeats, args.copies, args.threads) + run_hnsw_rows(args.repeats, args.threads)
                + run_lstsq_rows(args.repeats, args.threads) + run_multivector_rows(args.repeats, args.threads))
    print("\nNumPy baselines: MaxSim = per query one float32 GEMM over all doc tokens + maximum.reduceat; PQ search ="
          " broadcast tables + gathered ADC + argpartition (OpenBLAS threads as configured; the IVF-PQ rows' ratio is"
          " against that full NumPy scan). Ratios > 1 mean simkern"
          " is faster. PQ rows use the 11k demo doc tokens as single vectors and 200 query tokens as queries."
          " FDE rows encode the 128 demo docs x copies (the checks use the 128 originals). HNSW rows index the 11k"
          " doc tokens (inner product) and search 200 query tokens; NumPy = one GEMM + argpartition. lstsq rows solve a"
          " seeded 65536 x 64 Gaussian problem; NumPy = numpy.linalg.lstsq (LAPACK gelsd). The MultiVectorIndex row's"
          " ratio is against brute-force maxsim_topk over the 128 demo docs (a tiny corpus: see bench_multivector)."
          " Full peer comparisons: bench/.")
    return 0
