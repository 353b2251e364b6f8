#!/usr/bin/env python3
"""MUVERA FDE encoding: simkern against muvera-python, fastembed's Muvera and a float64 NumPy reference.

    python bench/bench_fde.py                 # full run (about 3 minutes on 2 cores)
    python bench/bench_fde.py --quick         # smoke test
    python bench/bench_fde.py --threads 1,2 --json fde.json
    python bench/bench_fde.py --compat        # simkern.compat.muvera against muvera-python, 1 thread (~30 s)

Configuration (the issue's): R=20 repetitions, k=6 SimHash bits, AMS projection to 16, documents filled, no
final projection: 20 * 64 * 16 = 20480-d encodings. Data: synthetic documents of 64 tokens x 128-d and queries of
32 tokens (seeded N(0, 1)), and the ColBERT-like token vectors of ../shared/data/dev (3000 docs of 40-180 tokens,
300 queries, stored float16, widened to float32). Rates are documents (or queries) per second; each library
encodes a whole batch per call (simkern: one call; muvera-python: its list API; fastembed: one call per set; the
NumPy reference: the float64 loop of tests/reference.py on a subset, rate scaled).

Every thread count runs in its own child process with the thread variables set before anything is imported (as
in bench_pq.py). simkern gets threads=T; muvera-python and fastembed have no thread control (one core; their
NumPy calls use OPENBLAS_NUM_THREADS=T). Calls are timed in interleaved rounds (order rotated); median and best.

--compat times the drop-in shim simkern.compat.muvera.Muvera against muvera-python's Muvera on the same calls
(same configuration and seed, so the same encodings: checked before timing), in one 1-thread child: a list of
documents / queries per call and one set per call, for muvera's README configuration (R=10, k=4, identity, 128-d)
and the configuration above; the ratio is muvera-python's time over the shim's.

Quality (--no-quality to skip): on the dev data, with simkern's encoder (identical semantics to Google's
reference) for the paper's (R=20, k=5, d_proj=16) and (R=20, k=6, d_proj=32) configurations, recall of the exact
MaxSim top-10 (mv_gt_maxsim_top100.npy) within the top N docs by FDE inner product, N in {100, 200, 500, 1000}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import (  # noqa: E402
    add_common_args,
    fmt_ms,
    fmt_rate,
    log,
    parse_threads,
    print_blas,
    print_load,
    print_table,
    run_children,
    run_worker,
    time_group,
    write_json,
)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "dev"))
CONFIG = dict(num_repetitions=20, num_simhash_projections=6, projection_dimension=16)
TARGET = 10.0  # the issue: >= 10x muvera-python single thread
QUALITY = [dict(num_repetitions=20, num_simhash_projections=5, projection_dimension=16),
           dict(num_repetitions=20, num_simhash_projections=6, projection_dimension=32)]


def load_sets(args, np, simkern):
    rng = np.random.default_rng(args.seed)
    n_docs, n_q = (300, 150) if args.quick else (2000, 1000)
    sets = {"synthetic": dict(
        title=f"synthetic: {n_docs} docs x 64 tokens, {n_q} queries x 32 tokens, dim 128, N(0, 1)",
        docs=[rng.standard_normal((64, 128)).astype(np.float32) for _ in range(n_docs)],
        queries=[rng.standard_normal((32, 128)).astype(np.float32) for _ in range(n_q)])}
    d = args.data
    if d and os.path.exists(os.path.join(d, "mv_doc_tokens.npy")):
        dt = np.load(os.path.join(d, "mv_doc_tokens.npy")).astype(np.float32)
        do = np.load(os.path.join(d, "mv_doc_offsets.npy"))
        qt = np.load(os.path.join(d, "mv_query_tokens.npy")).astype(np.float32)
        qo = np.load(os.path.join(d, "mv_query_offsets.npy"))
        nd = min(len(do) - 1, 600 if args.quick else len(do) - 1)
        sets["dev"] = dict(title=f"dev ({d}): {nd} docs ({np.diff(do[:nd + 1]).mean():.1f} tokens on average), "
                                 f"{len(qo) - 1} queries, dim 128, stored float16",
                           docs=[dt[do[i]:do[i + 1]] for i in range(nd)],
                           queries=[qt[qo[i]:qo[i + 1]] for i in range(len(qo) - 1)],
                           ragged=(simkern.Ragged(dt, do), simkern.Ragged(qt, qo)))
    else:
        log(f"note: dev data not found in {d!r}: dev rows and quality skipped (use --data DIR)")
    return sets


def worker(args) -> None:
    T = args.worker
    import numpy as np
    import simkern
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from reference import fde_ref

    notes = set()
    try:
        import muvera
    except ImportError as e:
        muvera = None
        notes.add(f"muvera-python skipped (ImportError: {e}); pip install muvera-python")
    try:
        from fastembed.postprocess.muvera import Muvera as FastembedMuvera
    except ImportError as e:
        FastembedMuvera = None
        notes.add(f"fastembed Muvera skipped (ImportError: {e}); pip install fastembed")
    sets = load_sets(args, np, simkern)
    fde = simkern.FDE(128, **CONFIG)
    cfg = fde.config
    mats = fde._plan.matrices()
    out = dict(threads=T, results=[], notes=[], titles={k: v["title"] for k, v in sets.items()},
               kernels=simkern.kernel_names())
    rounds = args.rounds or (3 if args.quick else 5)
    target = 0.05 if args.quick else 0.2
    for name, s in sets.items():
        for kind in ("documents", "queries"):
            clouds = s["docs"] if kind == "documents" else s["queries"]
            ragged = simkern.Ragged.from_list(clouds)
            n = len(clouds)
            enc = fde.encode_documents if kind == "documents" else fde.encode_queries
            methods = [dict(method="simkern FDE", n=n, fn=lambda e=enc, r=ragged: e(r, threads=T))]
            if muvera is not None:
                mv = muvera.Muvera(num_repetitions=20, num_simhash_projections=6, dimension=128,
                                   projection_type="ams_sketch", projection_dimension=16,
                                   fill_empty_partitions=True, seed=42)
                mfn = mv.encode_documents if kind == "documents" else mv.encode_queries
                methods.append(dict(method="muvera-python", n=n, fn=lambda f=mfn, c=clouds: f(c)))
            if FastembedMuvera is not None:
                fe = FastembedMuvera(dim=128, k_sim=6, dim_proj=16, r_reps=20, random_seed=42)
                ffn = fe.process_document if kind == "documents" else fe.process_query
                sub = clouds[:50]
                methods.append(dict(method="fastembed Muvera", n=len(sub),
                                    fn=lambda f=ffn, c=sub: [f(x) for x in c]))
            sub = clouds[:10]
            methods.append(dict(method="numpy float64 reference", n=len(sub),
                                fn=lambda c=sub, d=kind == "documents": [fde_ref(x, cfg, mats, d) for x in c]))
            log(f"[{T}T] {name} {kind}: " + ", ".join(m["method"] for m in methods))
            time_group(methods, rounds, target)
            for m in methods:
                out["results"].append(dict(data=name, kind=kind, method=m["method"], n=m["n"], reps=m["reps"],
                                           samples=m["samples"], median_s=m["median_s"], best_s=m["best_s"],
                                           rate=m["n"] / m["median_s"]))
    if not args.no_quality and T == 1 and "dev" in sets and args.data:
        gt = np.load(os.path.join(args.data, "mv_gt_maxsim_top100.npy"))[:, :10]
        docs, queries = sets["dev"]["ragged"]
        if args.quick:
            notes.add("quality skipped with --quick (it needs all dev docs)")
        else:
            out["quality"] = []
            for qc in QUALITY:
                f = simkern.FDE(128, **qc)
                scores = f.encode_queries(queries) @ f.encode_documents(docs).T
                order = np.argsort(-scores, axis=1, kind="stable")
                row = dict(config=qc, output_dim=f.output_dim)
                for N in (100, 200, 500, 1000):
                    top = order[:, :N]
                    row[f"R@{N}"] = float(np.mean([np.isin(g, t).mean() for g, t in zip(gt, top)]))
                out["quality"].append(row)
    out["notes"] = sorted(notes)
    with open(args.worker_out, "w") as f:
        json.dump(out, f)


COMPAT_CONFIGS = {
    "README R=10 k=4 identity": dict(num_repetitions=10, num_simhash_projections=4, dimension=128),
    "R=20 k=6 AMS 16": dict(num_repetitions=20, num_simhash_projections=6, dimension=128,
                            projection_type="ams_sketch", projection_dimension=16),
}


def compat_worker(args) -> None:
    """The shim against muvera-python, same calls (run in a 1-thread child)."""
    import numpy as np
    import simkern
    from simkern.compat.muvera import Muvera as Shim

    out = dict(threads=args.worker, results=[], notes=[], kernels=simkern.kernel_names())
    try:
        import muvera
    except ImportError as e:
        out["notes"] = [f"muvera-python not installed ({e}): nothing to compare; pip install muvera-python"]
        with open(args.worker_out, "w") as f:
            json.dump(out, f)
        return
    rng = np.random.default_rng(args.seed)
    n_docs, n_q = (60, 30) if args.quick else (300, 150)
    docs = [rng.standard_normal((int(n), 128)).astype(np.float32) for n in rng.integers(40, 120, n_docs)]
    queries = [rng.standard_normal((32, 128)).astype(np.float32) for _ in range(n_q)]
    rounds = args.rounds or (3 if args.quick else 5)
    target = 0.05 if args.quick else 0.2
    for name, cfg in COMPAT_CONFIGS.items():
        peer, shim = muvera.Muvera(**cfg, seed=42), Shim(**cfg, seed=42)
        for call, sets, single in (("encode_documents", docs, False), ("encode_queries", queries, False),
                                   ("encode_documents", docs, True), ("encode_queries", queries, True)):
            arg = sets[0] if single else sets
            peer_fn, shim_fn = getattr(peer, call), getattr(shim, call)
            a, b = peer_fn(arg), shim_fn(arg)
            same = bool(a.shape == b.shape and np.allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(a).max()))
            methods = [dict(method="muvera-python", fn=lambda f=peer_fn, x=arg: f(x)),
                       dict(method="shim", fn=lambda f=shim_fn, x=arg: f(x))]
            time_group(methods, rounds, target)
            label = f"{call}({'one set' if single else f'list of {len(sets)}'})"
            out["results"].append(dict(config=name, call=label, same=same,
                                       **{m["method"]: dict(median_s=m["median_s"], best_s=m["best_s"])
                                          for m in methods}))
            log(f"[compat] {name} {label}: ratio {methods[0]['median_s'] / methods[1]['median_s']:.2f}x")
    with open(args.worker_out, "w") as f:
        json.dump(out, f)


def compat_main(args) -> None:
    t_all = time.perf_counter()
    extra = ["--compat", "--seed", str(args.seed)] + (["--quick"] if args.quick else [])
    if args.rounds:
        extra += ["--rounds", str(args.rounds)]
    workers, busy = run_children([1], lambda T: run_worker(__file__, T, extra, args.keep_openblas_env))
    print()
    print_blas(workers, args.keep_openblas_env)
    w = workers[1]
    for n in w["notes"]:
        print(f"note      : {n}")
    print("simkern.compat.muvera.Muvera vs muvera-python's Muvera, 1 thread, seed 42, docs of 40-119 tokens and "
          "queries of 32 tokens, 128-d; ratio = muvera-python median / shim median; same = equal encodings "
          "(float32 rounding)")
    print_load(busy, workers)
    rows = [[r["config"], r["call"], fmt_ms(r["muvera-python"]["median_s"]), fmt_ms(r["shim"]["median_s"]),
             fmt_ms(r["shim"]["best_s"]), f"{r['muvera-python']['median_s'] / r['shim']['median_s']:.2f}x",
             "yes" if r["same"] else "NO"] for r in w["results"]]
    print_table(rows, ["config", "call", "muvera ms", "shim ms", "shim best", "ratio", "same"], left=2)
    print(f"\ntotal wall time {time.perf_counter() - t_all:.0f} s")
    write_json(args.json, [1], args.quick, busy, workers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test: fewer docs, 3 rounds, no quality")
    ap.add_argument("--threads", default="1,all", help="comma list of thread counts (default: 1,all)")
    ap.add_argument("--rounds", type=int, default=0, help="interleaved timing rounds (default 5, --quick 3)")
    ap.add_argument("--data", default=DEFAULT_DATA, help="folder with the mv_*.npy files (default ../shared/data/dev)")
    ap.add_argument("--no-quality", action="store_true", help="skip the dev-data retrieval quality table")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compat", action="store_true",
                    help="only time simkern.compat.muvera against muvera-python (1 thread)")
    add_common_args(ap)
    args = ap.parse_args()
    if args.worker is not None:
        (compat_worker if args.compat else worker)(args)
        return
    if args.compat:
        compat_main(args)
        return
    threads = parse_threads(args.threads)
    extra = ["--seed", str(args.seed), "--data", args.data or ""]
    if args.rounds:
        extra += ["--rounds", str(args.rounds)]
    if args.quick:
        extra.append("--quick")
    if args.no_quality:
        extra.append("--no-quality")
    t_all = time.perf_counter()
    workers, busy = run_children(threads, lambda T: run_worker(__file__, T, extra, args.keep_openblas_env))
    print()
    print_blas(workers, args.keep_openblas_env)
    for n in sorted({n for w in workers.values() for n in w["notes"]}):
        print(f"note      : {n}")
    print(f"FDE       : R={CONFIG['num_repetitions']}, k={CONFIG['num_simhash_projections']}, AMS d_proj="
          f"{CONFIG['projection_dimension']}, documents filled, no final projection (20480-d); muvera-python and "
          f"fastembed with the same sizes (their own seeds/variants: outputs are not comparable value by value)")
    print("Columns: sets = point clouds per call (* = a subset, rate scaled); med/best ms per call; rate = sets/s;"
          " sk/peer = simkern's rate / this row's at the same thread count; vs 1T = 1T median / this median.")
    print_load(busy, workers)
    w1 = workers.get(min(workers))
    summary = {"targets": []}
    for data in w1["titles"]:
        for kind in ("documents", "queries"):
            print()
            print(f"== {data} {kind}: {w1['titles'][data]}")
            rows = []
            for T in sorted(workers):
                res = [r for r in workers[T]["results"] if r["data"] == data and r["kind"] == kind]
                sk = next(r for r in res if r["method"] == "simkern FDE")
                for r in res:
                    base = next((x for x in workers[min(workers)]["results"] if x["data"] == data
                                 and x["kind"] == kind and x["method"] == r["method"]), None)
                    ratio = sk["rate"] / r["rate"] if r is not sk else None
                    vs1 = base["median_s"] / r["median_s"] if base is not None and T != min(workers) else None
                    rows.append([r["method"], T, f"{r['n']}" + ("*" if r["n"] < sk["n"] else ""),
                                 fmt_ms(r["median_s"]), fmt_ms(r["best_s"]), f"{fmt_rate(r['rate'])}/s",
                                 f"{ratio:.2f}x" if ratio else "-", f"{vs1:.2f}x" if vs1 else "-"])
                    if T == 1 and r["method"] == "muvera-python":
                        met = ratio >= TARGET
                        summary["targets"].append(dict(data=data, kind=kind, ratio=ratio, met=met))
            print_table(rows, ["method", "thr", "sets", "med ms", "best ms", "rate", "sk/peer", f"vs {min(workers)}T"],
                        left=1)
            for t in summary["targets"]:
                if t["data"] == data and t["kind"] == kind:
                    print(f"   target (1T) simkern vs muvera-python: {t['ratio']:.2f}x (target >= {TARGET}x) "
                          f"{'MET' if t['met'] else 'NOT MET'}")
    quality = next((w["quality"] for w in workers.values() if "quality" in w), None)
    if quality:
        print()
        print("== retrieval quality on the dev data: recall of the exact MaxSim top-10 within the FDE top N "
              "(simkern FDE = the reference's semantics)")
        rows = [[f"R={q['config']['num_repetitions']} k={q['config']['num_simhash_projections']} "
                 f"d_proj={q['config']['projection_dimension']}", q["output_dim"]]
                + [f"{q[f'R@{N}']:.3f}" for N in (100, 200, 500, 1000)] for q in quality]
        print_table(rows, ["config", "dim", "N=100", "N=200", "N=500", "N=1000"], left=1)
        summary["quality"] = quality
    print(f"\ntotal wall time {time.perf_counter() - t_all:.0f} s")
    write_json(args.json, threads, args.quick, busy, workers, summary=summary)


if __name__ == "__main__":
    main()
