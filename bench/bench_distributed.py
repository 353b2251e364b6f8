#!/usr/bin/env python3
"""simkern.distributed on one machine: what Ray adds to FDE encoding, and sharded search against one index.

    python bench/bench_distributed.py            # full run (about 4 minutes on 2 cores)
    python bench/bench_distributed.py --quick    # smoke test
    python bench/bench_distributed.py --json distributed.json

Needs the `ray` extra (pip install "simkern[ray]"). Ray runs a local cluster of this machine's cores
(ray.init(num_cpus=<cores>)); every figure is wall time of the whole call as a user makes it.

1. Encoding: the MultiVectorIndex default FDE (R=20, k=5, AMS d_proj=16, filled: 10240-d) over the dev token sets
   (../shared/data/dev: 3000 docs of 40-180 tokens x 128-d, float16 widened to float32), repeated --copies times
   (synthetic sets of the same lengths when the folder is absent). One process: `fde.encode_documents` over batches of
   --batch-size docs at threads=1 and threads=2. Ray: `simkern.distributed.encode_fde` over a materialised Dataset
   (Ray Data's variable-shaped tensor column; its creation is not timed) with 1 and 2 workers of num_cpus=1 (one
   simkern thread each), consumed by the driver with iter_batches; the input column is dropped from the output
   (`keep_input=False`), as a pipeline that writes (id, fde) does. Each Ray run starts its own actor pool, so its time
   includes the pool's start; the fixed cost of a run is measured alone on an 8-doc dataset. Rows of the Ray output
   are checked against the one-process encodings (every 97th id: bit-identical). Targets (issue 21): 2 workers
   >= 1.7x one worker, and >= 0.85x the one-process 2-thread encoder.
2. Sharded search: the dev sentence vectors (60000 x 384, inner product) in a PQIndex (48 x 8 bits, exact ADC, one
   quantizer trained on 20000 rows and shared by every shard) and an HNSWIndex (M=16, ef_construction=100, ef=64),
   as one index and as `build_shards` with 1, 2 and 4 shards served by `ShardedIndex` (one actor per shard, each
   running cores / shards simkern threads, at least 1). Batch: 1000 queries in one call (the one index at threads =
   cores). Latency: one query per call, --latency-calls calls (the one index at threads=1); median and p99. The
   fan-out overhead per call is the sharded median latency minus the one index's. PQ shards must return exactly the
   one index's (scores, ids); HNSW shards are different graphs, so their recall@10 (against the exact top-100) is
   reported beside the one index's.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import cpu_model, fmt_ms, fmt_rate, log, n_cpus, print_table  # noqa: E402
from simkern.demo import _best_time  # noqa: E402

_best = functools.partial(_best_time, warmup=False)  # best of n timed calls (warm-ups are done where needed)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "dev"))
TARGET_SCALE, TARGET_VS_LOCAL = 1.7, 0.85


def token_sets(args, np):
    """(list of float32 (n_i, 128) arrays, where): the dev token sets, or synthetic ones of the same lengths."""
    tok_path = os.path.join(args.data, "mv_doc_tokens.npy")
    if os.path.exists(tok_path):
        tokens = np.load(tok_path).astype(np.float32)
        offsets = np.load(os.path.join(args.data, "mv_doc_offsets.npy"))
        sets = [tokens[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
        where = f"dev ({len(sets)} docs, {len(tokens)} tokens)"
    else:
        rng = np.random.default_rng(args.seed)
        sets = [rng.standard_normal((int(n), 128)).astype(np.float32) for n in rng.integers(40, 181, 3000)]
        where = "synthetic (3000 docs of 40-180 N(0,1) tokens; ../shared/data/dev absent)"
    n = len(sets) if not args.quick else 600
    return sets[:n] * args.copies, where


def bench_encode(args, np, ray, simkern, report):
    sets, where = token_sets(args, np)
    from simkern import distributed
    fde = simkern.MultiVectorIndex(128).fde
    n2 = len(sets)
    n1 = n2 // 2
    log(f"encode: {n1} and {n2} docs ({where} x {args.copies}), FDE {fde.output_dim}-d")
    bs = args.batch_size or max(1, distributed._BATCH_BYTES // (4 * fde.output_dim))
    batches = [simkern.Ragged.from_list(sets[i:i + bs]) for i in range(0, n2, bs)]
    local = {t: _best(lambda t=t: [fde.encode_documents(b, threads=t) for b in batches], args.rounds) for t in (1, 2)}
    datasets = {n: ray.data.from_items([{"id": i, "tokens": s} for i, s in enumerate(sets[:n])]).materialize()
                for n in (8, n1, n2)}

    def run(n, workers):
        out = distributed.encode_fde(datasets[n], fde, batch_size=args.batch_size or None, num_cpus=1,
                                     concurrency=workers, keep_input=False).materialize()
        assert out.count() == n
        return out

    # warm-up (imports, first actor pools) and the bit-identity check on every 97th row
    check = run(n1, 2).filter(lambda row: row["id"] % 97 == 0).take_all()
    got = np.stack([r["fde"] for r in sorted(check, key=lambda r: int(r["id"]))])
    want = fde.encode_documents(simkern.Ragged.from_list([sets[i] for i in range(0, n1, 97)]))
    assert np.array_equal(got, want), "Ray Data encodings differ from one process"
    fixed = _best(lambda: run(8, 1), args.rounds)
    ray_t = {(n, w): _best(lambda n=n, w=w: run(n, w), args.rounds) for n in (n1, n2) for w in (1, 2)}
    # marginal throughput: the docs added over the time they added (the per-call fixed cost cancels)
    # (nan when the larger run was not slower: timing noise beats the work, as in --quick)
    marginal = {w: (n2 - n1) / d if (d := ray_t[(n2, w)] - ray_t[(n1, w)]) > 0 else float("nan") for w in (1, 2)}
    rate = {w: n2 / ray_t[(n2, w)] for w in (1, 2)}
    loc = {t: n2 / local[t] for t in (1, 2)}
    rows = [["one process, threads=1", fmt_rate(loc[1]), "", f"{local[1]:.2f} s", ""],
            ["one process, threads=2", fmt_rate(loc[2]), "", f"{local[2]:.2f} s", f"{loc[2] / loc[1]:.2f}x threads=1"],
            ["Ray Data, 1 worker", fmt_rate(rate[1]), fmt_rate(marginal[1]), f"{ray_t[(n2, 1)]:.2f} s",
             f"{rate[1] / loc[1]:.2f}x threads=1 (marginal {marginal[1] / loc[1]:.2f}x)"],
            ["Ray Data, 2 workers", fmt_rate(rate[2]), fmt_rate(marginal[2]), f"{ray_t[(n2, 2)]:.2f} s",
             f"{rate[2] / rate[1]:.2f}x 1 worker, marginal {marginal[2] / marginal[1]:.2f}x (target >= "
             f"{TARGET_SCALE}); {rate[2] / loc[2]:.2f}x threads=2, marginal {marginal[2] / loc[2]:.2f}x (target >= "
             f"{TARGET_VS_LOCAL})"],
            ["Ray Data, 8 docs (fixed cost)", "", "", f"{fixed:.2f} s", "actor pool start + scheduling, per call"]]
    print(f"\n## FDE encoding, {n2} docs, {fde.output_dim}-d, batches of {bs} (docs/s, best of {args.rounds}; "
          f"marginal = ({n2} - {n1}) docs / (time({n2}) - time({n1})); Ray output == one process on every 97th "
          "row: yes)\n")
    print_table(rows, ["encoder", f"docs/s at {n2}", "marginal docs/s", "time", "ratio"])
    report["encode"] = {"docs": [n1, n2], "batch_size": bs, "local_s": local,
                        "ray_s": {f"{n}_{w}": t for (n, w), t in ray_t.items()}, "fixed_s": fixed,
                        "marginal_docs_per_s": marginal, "scale_2_vs_1": rate[2] / rate[1],
                        "scale_2_vs_1_marginal": marginal[2] / marginal[1], "ray2_vs_local2": rate[2] / loc[2],
                        "ray2_vs_local2_marginal": marginal[2] / loc[2]}


def recall_at_10(ids, gt, np):
    return float(np.mean([len(set(ids[i, :10]) & set(gt[i, :10])) / 10 for i in range(len(ids))]))


def bench_search(args, np, ray, simkern, report):
    cores = n_cpus()
    x_path = os.path.join(args.data, "docs.npy")
    if os.path.exists(x_path):
        x = np.load(x_path).astype(np.float32)
        q = np.load(os.path.join(args.data, "queries.npy")).astype(np.float32)
        gt = np.load(os.path.join(args.data, "gt_ip_top100.npy"))
        where = "dev"
    else:
        rng = np.random.default_rng(args.seed)
        x = rng.standard_normal((60000, 384)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        q = rng.standard_normal((1000, 384)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        gt = np.argsort(-(q @ x.T), axis=1)[:, :100]
        where = "synthetic (../shared/data/dev absent)"
    if args.quick:
        x, q = x[:10000], q[:200]
        gt = np.argsort(-(q @ x.T), axis=1)[:, :100]
    n, ids = len(x), np.arange(len(x), dtype=np.int64)
    log(f"search: {n} x {x.shape[1]} ({where}), {len(q)} queries")
    rng = np.random.default_rng(args.seed)
    pq = simkern.PQIndex(x.shape[1], 48, 8, metric="ip").train(x[rng.permutation(n)[:20000]], iters=10)
    # name: (template, search kwargs, exact: the shards must return exactly the one index's results)
    templates = {"PQIndex 48x8 (exact ADC)": (pq, {}, True),
                 "HNSWIndex M=16 ef=64": (simkern.HNSWIndex(x.shape[1], metric="ip", M=16, ef_construction=100,
                                                            seed=1), {"ef": 64}, False)}
    ds = ray.data.from_items([{"id": int(i), "vector": v} for i, v in zip(ids, x)]).materialize()
    calls = args.latency_calls
    results = {}
    for name, (template, kwargs, exact) in templates.items():
        single = copy.deepcopy(template)
        t0 = time.perf_counter()
        if exact:  # PQIndex: ids are positions, here equal to the global ids
            single.add(x)
        else:
            single.add(x, ids)
        build_single = time.perf_counter() - t0
        want = single.search(q, 10, threads=cores, **kwargs)
        batch_single = _best(lambda s=single, kw=kwargs: s.search(q, 10, threads=cores, **kw), args.rounds)
        lat_single = np.array([_best(lambda i=i, s=single, kw=kwargs: s.search(q[i:i + 1], 10, threads=1, **kw), 1)
                               for i in range(calls)])
        rows = [["one index", f"{build_single:.1f} s", fmt_rate(len(q) / batch_single),
                 fmt_ms(np.median(lat_single)), fmt_ms(np.percentile(lat_single, 99)), "",
                 f"{recall_at_10(want[1], gt, np):.3f}", ""]]
        entry = {"single": {"build_s": build_single, "qps": len(q) / batch_single,
                            "latency_median_s": float(np.median(lat_single))}}
        for shards in (1, 2, 4):
            with tempfile.TemporaryDirectory(prefix="simkern-bench-shards-") as folder:
                t0 = time.perf_counter()
                simkern.distributed.build_shards(ds, template, shards, folder, num_cpus=max(1, cores // shards))
                build = time.perf_counter() - t0
                index = simkern.distributed.ShardedIndex.open(folder, threads=max(1, cores // shards))
                try:
                    got = index.search(q, 10, **kwargs)
                    if exact:
                        same = np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
                        identical = "yes" if same else "NO"
                    else:
                        identical = "(other graphs)"
                    batch = _best(lambda ix=index, kw=kwargs: ix.search(q, 10, **kw), args.rounds)
                    for i in range(min(20, calls)):  # warm the actors' per-call paths
                        index.search(q[i:i + 1], 10, **kwargs)
                    lat = np.array([_best(lambda i=i, ix=index, kw=kwargs: ix.search(q[i:i + 1], 10, **kw), 1)
                                    for i in range(calls)])
                finally:
                    index.close()
            overhead = float(np.median(lat) - np.median(lat_single))
            rows.append([f"{shards} shard{'s' if shards > 1 else ''}", f"{build:.1f} s", fmt_rate(len(q) / batch),
                         fmt_ms(np.median(lat)), fmt_ms(np.percentile(lat, 99)), fmt_ms(overhead),
                         f"{recall_at_10(got[1], gt, np):.3f}", identical])
            entry[f"shards_{shards}"] = {"build_s": build, "qps": len(q) / batch, "identical": identical,
                                         "latency_median_s": float(np.median(lat)), "overhead_s": overhead,
                                         "qps_ratio": batch_single / batch}
        print(f"\n## Sharded search: {name}, {n} x {x.shape[1]}, k=10 (batch: {len(q)} queries per call; "
              f"latency: 1 query per call, {calls} calls)\n")
        print_table(rows, ["index", "build", "batch QPS", "latency median (ms)", "p99 (ms)", "fan-out overhead (ms)",
                           "recall@10", "== one index"])
        results[name] = entry
    report["search"] = results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test: fewer docs and rows, 1 round")
    ap.add_argument("--data", default=DEFAULT_DATA, help="folder of the dev data (default ../shared/data/dev)")
    ap.add_argument("--copies", type=int, default=0, help="times the dev token sets are repeated (default 16)")
    ap.add_argument("--batch-size", type=int, default=0, help="docs per encode batch (default: encode_fde's, 819)")
    ap.add_argument("--rounds", type=int, default=0, help="timing rounds, best kept (default 3, --quick 1)")
    ap.add_argument("--latency-calls", type=int, default=0, help="one-query calls timed (default 200, --quick 20)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["encode", "search"], help="run one part")
    ap.add_argument("--json", help="write the figures to this JSON file")
    args = ap.parse_args()
    args.copies = args.copies or (1 if args.quick else 16)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.latency_calls = args.latency_calls or (20 if args.quick else 200)

    import numpy as np
    try:
        import ray
        import ray.data
    except ImportError:
        print("bench_distributed.py needs Ray: pip install 'simkern[ray]'", file=sys.stderr)
        raise SystemExit(2) from None
    import simkern
    from simkern import runtime

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="ray")
    cores = n_cpus()
    print(f"# bench_distributed{' --quick' if args.quick else ''}: {cpu_model()}, {cores} cores, simkern ISA "
          f"{runtime.active_isa()}, Ray {ray.__version__} (local cluster, num_cpus={cores})")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    report = {"cores": cores, "isa": runtime.active_isa(), "ray": ray.__version__, "quick": args.quick}
    try:
        if args.only != "search":
            bench_encode(args, np, ray, simkern, report)
        if args.only != "encode":
            bench_search(args, np, ray, simkern, report)
    finally:
        ray.shutdown()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=float)


if __name__ == "__main__":
    main()
