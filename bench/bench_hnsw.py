#!/usr/bin/env python3
"""HNSW: simkern.HNSWIndex against hnswlib, faiss IndexHNSWFlat and usearch, side by side in one process.

    python bench/bench_hnsw.py                    # dev sentence vectors (60k x 384, ip) + 100k x 128 clustered L2
    python bench/bench_hnsw.py --quick            # 20k-vector subsets
    python bench/bench_hnsw.py --plot bench/hnsw.png

Same M (16) and ef_construction (200) for every library; "simkern float16" walks the graph on float16 copies and
re-scores the final candidates on float32 (it keeps both, so it uses more memory, not less). Build: 2 threads, wall
time and the process's RSS growth
(VmRSS before and after, the data already loaded). Search: one batch of queries per call, 1 thread (and 2 with
--threads 1,2), ef in an increasing sweep; for each ef the libraries run in rotated order, best of --rounds.
recall@10 against exact top-10 (dev: the shipped ground truth; synthetic: brute force). QPS at recall 0.95 is
interpolated (log-linear) along each library's curve; ratios are simkern / hnswlib.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import cpu_model, log, print_table  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "dev"))
EFS = [10, 16, 24, 32, 48, 64, 96, 128, 256]
M, EFC = 16, 200


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def clustered(n, dim, seed, clusters=100, rank=64):
    """The mixture of ../shared/notes/hnsw.md: per cluster a N(0, 1) center, a 64-d subspace (orthonormal basis)
    with coefficients of scale 0.8, and isotropic noise 0.3. Base vectors and queries must come from one call
    (the same clusters): split the rows."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim)).astype(np.float32)
    basis = np.linalg.qr(rng.standard_normal((clusters, dim, rank)))[0].transpose(0, 2, 1).astype(np.float32)
    which = rng.integers(0, clusters, n)
    coef = rng.standard_normal((n, rank)).astype(np.float32) * 0.8
    x = centers[which] + np.einsum("nk,nkd->nd", coef, basis[which]) + 0.3 * rng.standard_normal((n, dim))
    return x.astype(np.float32)


def exact_top(x, q, k, metric):
    out = np.empty((len(q), k), np.int64)
    xx = (x.astype(np.float32) ** 2).sum(1)
    for s in range(0, len(q), 256):
        qq = q[s:s + 256]
        d = -2 * qq @ x.T + xx[None] if metric == "l2" else -(qq @ x.T)
        out[s:s + 256] = np.argsort(d, axis=1)[:, :k]
    return out


def recall(found, truth):
    k = found.shape[1]
    return float(np.mean([len(set(f) & set(t[:k])) / k for f, t in zip(found, truth)]))


class Lib:
    def __init__(self, name, build, search):
        self.name, self.build, self.search = name, build, search


def libraries(dim, metric):
    import simkern
    libs = []

    def sk_build(x):
        ix = simkern.HNSWIndex(dim, metric="ip" if metric == "ip" else "l2", M=M, ef_construction=EFC, seed=1)
        ix.add(x, threads=2)
        return ix
    libs.append(Lib("simkern", sk_build, lambda ix, q, ef, T: ix.search(q, k=10, ef=ef, threads=T)[1]))

    def sk16_build(x):
        ix = simkern.HNSWIndex(dim, metric="ip" if metric == "ip" else "l2", M=M, ef_construction=EFC, seed=1,
                               storage="float16")
        ix.add(x, threads=2)
        return ix
    libs.append(Lib("simkern float16", sk16_build, lambda ix, q, ef, T: ix.search(q, k=10, ef=ef, threads=T)[1]))
    try:
        import hnswlib

        def hl_build(x):
            ix = hnswlib.Index("ip" if metric == "ip" else "l2", dim)
            ix.init_index(len(x), M=M, ef_construction=EFC, random_seed=1)
            ix.set_num_threads(2)
            ix.add_items(x, np.arange(len(x)))
            return ix

        def hl_search(ix, q, ef, T):
            ix.set_ef(ef)
            ix.set_num_threads(T)
            return ix.knn_query(q, k=10)[0]
        libs.append(Lib("hnswlib", hl_build, hl_search))
    except ImportError:
        log("note: hnswlib not installed")
    try:
        import faiss

        def fa_build(x):
            faiss.omp_set_num_threads(2)
            ix = faiss.IndexHNSWFlat(dim, M, faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2)
            ix.hnsw.efConstruction = EFC
            ix.add(x)
            return ix

        def fa_search(ix, q, ef, T):
            faiss.omp_set_num_threads(T)
            ix.hnsw.efSearch = ef
            return ix.search(q, 10)[1]
        libs.append(Lib("faiss HNSWFlat", fa_build, fa_search))
    except ImportError:
        log("note: faiss not installed")
    try:
        from usearch.index import Index as UIndex

        def us_build(x):
            ix = UIndex(ndim=dim, metric="ip" if metric == "ip" else "l2sq", dtype="f32", connectivity=M,
                        expansion_add=EFC)
            ix.add(np.arange(len(x)), x, threads=2)
            return ix

        def us_search(ix, q, ef, T):
            ix.expansion_search = ef
            return ix.search(q, 10, threads=T).keys.astype(np.int64)
        libs.append(Lib("usearch", us_build, us_search))
    except ImportError:
        log("note: usearch not installed")
    return libs


def index_bytes(name, ix) -> float:
    """The index's own size: simkern memory_bytes, hnswlib's file size, faiss's serialized size, usearch's
    memory_usage (which counts capacity reserved up to the next power of two)."""
    try:
        if name.startswith("simkern"):
            return ix.memory_bytes
        if name == "hnswlib":
            return ix.index_file_size()
        if name.startswith("faiss"):
            import faiss
            return faiss.serialize_index(ix).nbytes
        if name == "usearch":
            return ix.memory_usage
    except Exception:  # noqa: BLE001 - a size we cannot read is reported as nan
        pass
    return float("nan")


def qps_at(curve, target):
    """Log-linear interpolation of QPS at `target` recall along the (recall, qps) points sorted by recall."""
    pts = sorted(curve)
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if r0 <= target <= r1 and r1 > r0:
            t = (target - r0) / (r1 - r0)
            return float(np.exp(np.log(q0) + t * (np.log(q1) - np.log(q0))))
    return None


def run_set(title, x, q, truth, metric, threads, rounds, plot_rows):
    print(f"\n== {title}")
    libs = libraries(x.shape[1], metric)
    built = {}
    rows = []
    for lib in libs:
        gc.collect()
        r0 = rss_bytes()
        t0 = time.perf_counter()
        built[lib.name] = lib.build(x)
        wall = time.perf_counter() - t0
        gc.collect()
        rows.append([lib.name, f"{wall:.1f}", f"{(rss_bytes() - r0) / 2**20:.0f}",
                     f"{index_bytes(lib.name, built[lib.name]) / 2**20:.1f}"])
        log(f"built {lib.name} in {wall:.1f} s")
    base = {r[0]: float(r[1]) for r in rows}
    for r in rows:
        r.append(f"{float(r[1]) / base['hnswlib']:.2f}x" if "hnswlib" in base else "-")
    print_table(rows, ["library", "build s (2T)", "RSS growth MiB", "index MiB", "build vs hnswlib"])
    curves = {}
    for T in threads:
        table = []
        for ef in EFS:
            best = {lib.name: np.inf for lib in libs}
            found = {}
            for r in range(rounds):
                order = libs[r % len(libs):] + libs[: r % len(libs)]
                for lib in order:
                    t0 = time.perf_counter()
                    ids = lib.search(built[lib.name], q, ef, T)
                    best[lib.name] = min(best[lib.name], time.perf_counter() - t0)
                    found[lib.name] = ids
            for lib in libs:
                rec = recall(np.asarray(found[lib.name]), truth)
                qps = len(q) / best[lib.name]
                curves.setdefault((lib.name, T), []).append((rec, qps))
                table.append([lib.name, str(T), str(ef), f"{rec:.4f}", f"{qps:,.0f}"])
        print_table(table, ["library", "thr", "ef", "recall@10", "QPS"])
        summary = []
        for target in (0.9, 0.95, 0.99):
            ref = qps_at(curves.get(("hnswlib", T), []), target)
            for lib in libs:
                v = qps_at(curves[(lib.name, T)], target)
                summary.append([lib.name, str(T), f"{target:.2f}", "-" if v is None else f"{v:,.0f}",
                                "-" if v is None or ref is None else f"{v / ref:.2f}x"])
        print_table(summary, ["library", "thr", "recall", "QPS (interp.)", "vs hnswlib"])
    plot_rows.append((title, curves))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--plot", default=None, help="write the QPS-recall curves to this PNG")
    ap.add_argument("--sets", default="dev,synthetic")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    import simkern
    print(f"CPU       : {cpu_model()}")
    simkern.show_runtime()
    print(f"HNSW      : M={M}, ef_construction={EFC}, k=10, ef sweep {EFS}")
    plot_rows = []
    n_limit = 20000 if args.quick else None
    if "dev" in args.sets and os.path.exists(os.path.join(args.data, "docs.npy")):
        x = np.load(os.path.join(args.data, "docs.npy")).astype(np.float32)
        q = np.load(os.path.join(args.data, "queries.npy")).astype(np.float32)
        if n_limit:
            x = x[:n_limit]
            truth = exact_top(x, q, 10, "ip")
        else:
            truth = np.load(os.path.join(args.data, "gt_ip_top100.npy"))[:, :10]
        run_set(f"dev sentence vectors: {len(x)} x {x.shape[1]}, inner product, {len(q)} queries", x, q, truth,
                "ip", threads, args.rounds, plot_rows)
    elif "dev" in args.sets:
        log(f"note: dev data not found in {args.data!r}: skipped")
    if "synthetic" in args.sets:
        n = n_limit or 100000
        data = clustered(n + 1000, 128, 1)
        x, q = data[:n], data[n:]
        truth = exact_top(x, q, 10, "l2")
        run_set(f"synthetic clustered (100 clusters, 64-d subspaces + noise): {n} x 128, squared L2, 1000 queries",
                x, q, truth, "l2", threads, args.rounds, plot_rows)
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(plot_rows), figsize=(6 * len(plot_rows), 4.5), squeeze=False)
        for ax, (title, curves) in zip(axes[0], plot_rows):
            for (name, T), pts in sorted(curves.items()):
                pts = sorted(pts)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{name} ({T}T)")
            ax.set_xlabel("recall@10")
            ax.set_ylabel("queries / s")
            ax.set_yscale("log")
            ax.set_title(title, fontsize=9)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"\nplot written to {args.plot}")


if __name__ == "__main__":
    main()
