"""IVF-PQ against faiss-cpu IndexIVFPQ (8-bit) and IndexIVFPQFastScan (4-bit), side by side in one process.

Same nlist, m, nbits, training sample (the same rows handed to both) and k-means iterations (coarse and PQ).
Per configuration: train and add time, quantisation error (MSE of the reconstruction, on 10k database rows),
memory, then a sweep of nprobe with recall@10 against exact search and QPS over all queries (one batch call,
best of the rounds), at one thread and at every thread. The summary interpolates each method's QPS at recall =
0.5 / 0.7 / 0.9 x the PQ ceiling (the lower of the two methods' recall at the largest nprobe) and gives the ratio
simkern / faiss beside the target (>= 1.5x at one thread). A recall-vs-QPS plot goes to --plot.

    python bench/bench_ivfpq.py [--quick] [--datasets dev,synthetic] [--json FILE] [--plot FILE]

Configurations: by_residual=True on both sides (IndexIVFPQ's default and the RepCONC / JPQ structure) and, for
4 bits, also by_residual=False on both ("-raw": IndexIVFPQFastScan's default, which skips the residual tables).

Datasets: "dev" = ../shared/data/dev sentence vectors (60k x 384, L2-normalised; ground truth: the stored exact
inner-product top-10, = L2 order), nlist 256, m 48 x 8 bit and 96 x 4 bit (and 96 x 4 raw); "synthetic" = 1M x 128
Gaussian mixture (20000 overlapping components; --quick: 200k), nlist 1024, m 16 x 8 bit and 32 x 4 bit (and 32 x 4
raw); exact L2 ground truth by faiss IndexFlatL2.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
DEV = HERE.parent.parent / "shared" / "data" / "dev"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_dev() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    docs = np.ascontiguousarray(np.load(DEV / "docs.npy").astype(np.float32))
    queries = np.ascontiguousarray(np.load(DEV / "queries.npy").astype(np.float32))
    gt = np.load(DEV / "gt_ip_top100.npy")[:, :10]
    return docs, queries, gt


def make_synthetic(n: int, dim: int = 128, clusters: int = 20000, nq: int = 1000, seed: int = 7):
    import faiss

    rng = np.random.default_rng(seed)
    # Overlapping components (centres N(0, 1), spreads 0.3-0.6): neighbours straddle cells, so recall grows with
    # nprobe (with 1000 well-separated components it saturated at nprobe = 1 and the sweep measured nothing).
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    scales = rng.uniform(0.3, 0.6, clusters).astype(np.float32)

    def draw(count: int) -> np.ndarray:
        c = rng.integers(0, clusters, count)
        return (centres[c] + scales[c, None] * rng.standard_normal((count, dim), dtype=np.float32)).astype(np.float32)

    x, q = draw(n), draw(nq)
    flat = faiss.IndexFlatL2(dim)
    flat.add(x)
    _, gt = flat.search(q, 10)
    return x, q, gt


def recall_at_10(ids: np.ndarray, gt: np.ndarray) -> float:
    return float(np.mean([len(set(ids[i, :10].tolist()) & set(gt[i, :10].tolist())) / 10 for i in range(len(gt))]))


def qps_at(curve: list[tuple[int, float, float]], target: float) -> float | None:
    """QPS where the recall curve (nprobe, recall, qps) first reaches `target` (log-QPS interpolated in recall)."""
    prev = None
    for _, rec, qps in curve:
        if rec >= target:
            if prev is None or prev[0] >= rec:
                return qps
            r0, q0 = prev
            f = (target - r0) / (rec - r0)
            return float(np.exp(np.log(q0) + f * (np.log(qps) - np.log(q0))))
        prev = (rec, qps)
    return None


def run_config(name, x, q, gt, nlist, m, nbits, by_residual, iters, nprobes, thread_counts, rounds, train_n):
    import faiss
    import simkern
    from simkern.demo import _best_time  # best of `rounds` timed calls (the recall call above warms up)

    dim = x.shape[1]
    rng = np.random.default_rng(0)
    sample = x if train_n >= len(x) else np.ascontiguousarray(x[np.sort(rng.choice(len(x), train_n, replace=False))])
    all_threads = max(thread_counts)
    out = {"config": name, "n": len(x), "dim": dim, "nlist": nlist, "m": m, "nbits": nbits,
           "by_residual": by_residual, "iters": iters, "train_rows": len(sample)}

    # -- build, at every thread (training and adding are reported at the largest thread count)
    faiss.omp_set_num_threads(all_threads)
    quantizer = faiss.IndexFlatL2(dim)
    if nbits == 8:
        fidx = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8)
    else:
        fidx = faiss.IndexIVFPQFastScan(quantizer, dim, nlist, m, 4)
    fidx.by_residual = by_residual  # IndexIVFPQFastScan's default is False, IndexIVFPQ's True: set on both
    fidx.cp.niter = iters
    fidx.pq.cp.niter = iters
    t = time.perf_counter()
    fidx.train(sample)
    out["faiss_train_s"] = time.perf_counter() - t
    t = time.perf_counter()
    fidx.add(x)
    out["faiss_add_s"] = time.perf_counter() - t

    sidx = simkern.IVFPQIndex(dim, nlist, m, nbits, "l2", by_residual=by_residual)
    t = time.perf_counter()
    sidx.train(sample, iters=iters, threads=all_threads)
    out["simkern_train_s"] = time.perf_counter() - t
    t = time.perf_counter()
    sidx.add(x, threads=all_threads)
    out["simkern_add_s"] = time.perf_counter() - t
    out["imbalance"] = {"simkern": sidx.imbalance_factor, "faiss": float(fidx.invlists.imbalance_factor())}

    # -- quantisation error on 10k database rows
    probe = x[:10000]
    cells = simkern._core._ivf_assign(probe, sidx._centroids_blk, sidx._half_norms, True, all_threads)
    if by_residual:
        resid = np.ascontiguousarray(probe - sidx.centroids[cells])
        recon = sidx.centroids[cells] + sidx.pq.decode(sidx.pq.encode(resid))
    else:
        recon = sidx.pq.decode(sidx.pq.encode(probe))
    out["simkern_mse"] = float(((recon - probe) ** 2).sum(1).mean())
    try:
        frecon = fidx.sa_decode(fidx.sa_encode(probe))
        out["faiss_mse"] = float(((frecon - probe) ** 2).sum(1).mean())
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        out["faiss_mse"] = None
        log(f"  faiss sa_encode: {e}")

    # -- memory: simkern's own accounting; faiss: serialized index (codes, ids, centroids) + precomputed table
    out["simkern_bytes"] = int(sidx.memory_bytes)
    fbytes = int(faiss.serialize_index(fidx).nbytes)
    table = getattr(fidx, "precomputed_table", None)  # IVFPQ: a float vector; IVFPQFastScan: an AlignedTable
    if table is not None:
        fbytes += int(table.size()) * 4
    out["faiss_bytes"] = fbytes

    # -- sweeps
    out["sweeps"] = {}
    for T in thread_counts:
        faiss.omp_set_num_threads(T)
        curves = {"simkern": [], "faiss": []}
        for nprobe in nprobes:
            sidx.nprobe = nprobe
            fidx.nprobe = nprobe
            _, si = sidx.search(q, 10, threads=T)
            _, fi = fidx.search(q, 10)
            st = _best_time(lambda: sidx.search(q, 10, threads=T), rounds, warmup=False)
            ft = _best_time(lambda: fidx.search(q, 10), rounds, warmup=False)
            curves["simkern"].append((nprobe, recall_at_10(si, gt), len(q) / st))
            curves["faiss"].append((nprobe, recall_at_10(fi, gt), len(q) / ft))
            log(f"  {name} T={T} nprobe={nprobe:4d}: simkern R={curves['simkern'][-1][1]:.3f} "
                f"{curves['simkern'][-1][2]:9.0f} q/s   faiss R={curves['faiss'][-1][1]:.3f} "
                f"{curves['faiss'][-1][2]:9.0f} q/s")
        ceiling = min(curves["simkern"][-1][1], curves["faiss"][-1][1])
        summary = {}
        for frac in (0.5, 0.7, 0.9):
            target = frac * ceiling
            s_q, f_q = qps_at(curves["simkern"], target), qps_at(curves["faiss"], target)
            summary[str(frac)] = {"recall": target, "simkern_qps": s_q, "faiss_qps": f_q,
                                  "ratio": (s_q / f_q) if s_q and f_q else None}
        out["sweeps"][str(T)] = {"curves": curves, "ceiling": ceiling, "at": summary}
    return out


def print_report(results: list[dict], meta: dict) -> None:
    print(f"== IVF-PQ: simkern.IVFPQIndex vs faiss-cpu {meta['faiss']} (IndexIVFPQ 8-bit, IndexIVFPQFastScan 4-bit)")
    print(f"   machine: {meta['cpu']}; simkern ISA {meta['isa']} (scan8 {meta['scan8']}, scan4 {meta['scan4']}); "
          f"{meta['cpus']} CPUs")
    print("   QPS: one batch call over all queries, best of rounds; recall@10 vs exact search; "
          "ratio = simkern QPS / faiss QPS at equal recall (interpolated); target >= 1.5x at 1 thread")
    for r in results:
        print(f"\n-- {r['config']}: n={r['n']} dim={r['dim']} nlist={r['nlist']} m={r['m']} x {r['nbits']} bit, "
              f"by_residual={r['by_residual']}, "
              f"{r['iters']} k-means iterations, {r['train_rows']} training rows")
        print(f"   train  simkern {r['simkern_train_s']:.2f} s  faiss {r['faiss_train_s']:.2f} s  "
              f"(faiss/simkern {r['faiss_train_s'] / r['simkern_train_s']:.2f}x, target >= 1)")
        print(f"   add    simkern {r['simkern_add_s']:.2f} s  faiss {r['faiss_add_s']:.2f} s  "
              f"(faiss/simkern {r['faiss_add_s'] / r['simkern_add_s']:.2f}x, target >= 1)")
        fm = r["faiss_mse"]
        print(f"   MSE    simkern {r['simkern_mse']:.5g}  faiss {fm if fm is None else f'{fm:.5g}'}")
        print(f"   memory simkern {r['simkern_bytes'] / 2**20:.2f} MiB  faiss {r['faiss_bytes'] / 2**20:.2f} MiB  "
              f"(simkern/faiss {r['simkern_bytes'] / r['faiss_bytes']:.3f}, target <= 1.05)")
        print(f"   imbalance simkern {r['imbalance']['simkern']:.3f}  faiss {r['imbalance']['faiss']:.3f}")
        for T, sw in r["sweeps"].items():
            print(f"   threads={T}: ceiling recall {sw['ceiling']:.3f}")
            print("     nprobe  simkern R   simkern q/s   faiss R   faiss q/s   ratio")
            for (npb, sr, sq), (_, fr, fq) in zip(sw["curves"]["simkern"], sw["curves"]["faiss"]):
                print(f"     {npb:6d}  {sr:9.3f}  {sq:12.0f}  {fr:8.3f}  {fq:10.0f}  {sq / fq:6.2f}x")
            for frac, a in sw["at"].items():
                ratio = "n/a" if a["ratio"] is None else f"{a['ratio']:.2f}x"
                verdict = "" if a["ratio"] is None or T != "1" else ("  MET" if a["ratio"] >= 1.5 else "  NOT MET")
                sq = "-" if a["simkern_qps"] is None else f"{a['simkern_qps']:.0f}"
                fq = "-" if a["faiss_qps"] is None else f"{a['faiss_qps']:.0f}"
                print(f"     at {frac} x ceiling (recall {a['recall']:.3f}): simkern {sq} q/s, faiss {fq} q/s, "
                      f"ratio {ratio}{verdict}")


def plot(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(results))
    rows = (len(results) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(results):]:
        ax.set_visible(False)
    for ax, r in zip(axes.flat, results):
        for T, sw in r["sweeps"].items():
            for who, style in (("simkern", "-o"), ("faiss", "--s")):
                c = sw["curves"][who]
                ax.plot([p[1] for p in c], [p[2] for p in c], style, ms=3, label=f"{who} T={T}")
        ax.set_yscale("log")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries / s")
        ax.set_title(f"{r['config']} (by_residual={r['by_residual']})", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and iterations; synthetic 200k")
    ap.add_argument("--datasets", default="dev,synthetic")
    ap.add_argument("--threads", default=None, help="comma-separated thread counts (default: 1 and all)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--plot", default=None)
    ap.add_argument("--replot", default=None, metavar="JSON", help="only redraw --plot from a --json file")
    args = ap.parse_args()
    if args.replot:
        with open(args.replot) as f:
            plot(json.load(f)["results"], args.plot or "ivfpq.png")
        return

    import faiss
    import simkern

    cpus = os.cpu_count() or 1
    thread_counts = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, cpus})
    iters = 10 if args.quick else 25
    rounds = 2 if args.quick else 4
    results = []
    wanted = args.datasets.split(",")
    if "dev" in wanted:
        if not DEV.exists():
            log(f"{DEV} not found: skipping the dev dataset")
        else:
            x, q, gt = load_dev()
            nprobes = [1, 2, 4, 8, 16, 32, 64, 128, 256]
            for m, nbits, res in ((48, 8, True), (96, 4, True), (96, 4, False)):
                name = f"dev-{m}x{nbits}" + ("" if res else "-raw")
                results.append(run_config(name, x, q, gt, 256, m, nbits, res, iters, nprobes, thread_counts, rounds,
                                          256 * 256))
    if "synthetic" in wanted:
        n = 200_000 if args.quick else 1_000_000
        log(f"synthetic: {n} x 128, exact ground truth ...")
        x, q, gt = make_synthetic(n)
        nprobes = [1, 2, 4, 8, 16, 32, 64, 128]
        for m, nbits, res in ((16, 8, True), (32, 4, True), (32, 4, False)):
            name = f"synthetic{n // 1000}k-{m}x{nbits}" + ("" if res else "-raw")
            results.append(run_config(name, x, q, gt, 1024, m, nbits, res, iters, nprobes, thread_counts, rounds,
                                      256 * 1024))
    names = simkern.kernel_names()["pq"]
    meta = {"faiss": faiss.__version__, "simkern": simkern.__version__, "isa": simkern.active_isa(),
            "scan8": names["scan8"], "scan4": names["scan4"], "cpus": cpus, "cpu": platform.processor() or "?",
            "quick": args.quick}
    try:
        with open("/proc/cpuinfo") as f:
            meta["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print_report(results, meta)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
