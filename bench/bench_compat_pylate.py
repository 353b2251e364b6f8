#!/usr/bin/env python3
"""simkern.compat.pylate against PyLate's own CPU path (its torch code), call for call.

    python bench/bench_compat_pylate.py             # one thread (the issue's comparison), about a minute
    python bench/bench_compat_pylate.py --quick     # smoke test: 200 docs, 3 rounds
    python bench/bench_compat_pylate.py --threads 1,2 --json pylate.json

The peer is PyLate 1.6's pure-torch path (``backend="torch"``, what it runs on a CPU): ``pylate.scores`` /
``pylate.rank`` themselves when importable, else the same torch code transcribed below from PyLate 1.6.0
(pylate/scores/colbert.py lines 189-201, 266-282, 376-389; pylate/rank/rank.py lines 114-155), labelled
"(transcribed)". Without torch the peer rows are skipped with a note.

Cases (dim 128, L2-normalised random tokens, seeded):

1. colbert_scores, unmasked: 32 queries x 32 tokens against 1000 docs x 180 tokens;
2. colbert_scores, masked: the same arrays, query masks keeping 8..32 tokens and document masks 50..180 (padding
   at the end, as a collator makes);
3. colbert_kd_scores, masked: 32 queries x 32 tokens, each against its own 32 candidates x 180 tokens;
4. colbert_scores_pairwise: 512 pairs, 32 x 180 tokens, 3-D arrays;
5. rerank: 32 queries x 100 documents of 50..180 tokens each (lists of arrays, as model.encode returns).

Each thread count runs in its own child process with the thread variables set before anything is imported;
simkern gets threads=T, torch torch.set_num_threads(T). Calls are warmed up, checked against each other, then timed
in interleaved rounds (order rotated); median and best. Ratio = peer median / shim median (> 1: the shim is faster).
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

RTOL = 1e-4  # agreement required between shim and peer, relative to max(|score|, 1)


# --------------------------------------------------------------- PyLate 1.6.0's torch path, transcribed

def transcribed(torch):
    """PyLate 1.6.0's CPU code, line for line (the convert_to_tensor calls and backend dispatch left out: the
    inputs are tensors already and backend="torch")."""
    def colbert_scores(queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None):
        scores = torch.einsum("ash,bth->abst", queries_embeddings, documents_embeddings)
        if queries_mask is not None:
            scores = scores * queries_mask.unsqueeze(1).unsqueeze(3)
        if documents_mask is not None:
            scores = scores * documents_mask.unsqueeze(0).unsqueeze(2)
        scores = scores.max(axis=-1).values.sum(axis=-1)
        return scores

    def colbert_scores_pairwise(queries_embeddings, documents_embeddings):
        scores = []
        for query_embedding, document_embedding in zip(queries_embeddings, documents_embeddings):
            query_document_score = torch.einsum("sh,th->st", query_embedding, document_embedding)
            scores.append(query_document_score.max(axis=-1).values.sum())
        return torch.stack(scores, dim=0)

    def colbert_kd_scores(queries_embeddings, documents_embeddings, queries_mask=None, documents_mask=None):
        scores = torch.einsum("ash,abth->abst", queries_embeddings, documents_embeddings)
        if queries_mask is not None:
            scores = scores * queries_mask.unsqueeze(1).unsqueeze(3)
        if documents_mask is not None:
            scores = scores * documents_mask.unsqueeze(2)
        scores = scores.max(axis=-1).values.sum(axis=-1)
        return scores

    def rerank(documents_ids, queries_embeddings, documents_embeddings):
        results = []
        for query_embeddings, query_documents_ids, query_documents_embeddings in zip(
                queries_embeddings, documents_ids, documents_embeddings):
            query_embeddings = torch.from_numpy(query_embeddings)
            query_documents_embeddings = [torch.from_numpy(d) for d in query_documents_embeddings]
            query_documents_embeddings = torch.nn.utils.rnn.pad_sequence(
                query_documents_embeddings, batch_first=True, padding_value=0)
            query_scores = colbert_scores(query_embeddings.unsqueeze(0), query_documents_embeddings)[0]
            scores, sorted_indices = torch.sort(input=query_scores, descending=True)
            scores = scores.cpu().tolist()
            query_documents = [query_documents_ids[idx] for idx in sorted_indices.tolist()]
            results.append([dict(id=doc_id, score=score) for doc_id, score in zip(query_documents, scores)])
        return results

    return dict(colbert_scores=colbert_scores, colbert_scores_pairwise=colbert_scores_pairwise,
                colbert_kd_scores=colbert_kd_scores, rerank=rerank)


def pylate_peer(torch):
    """PyLate's functions (backend="torch") when importable, else the transcription; and its label."""
    try:
        from pylate import rank, scores
    except ImportError:
        return transcribed(torch), "PyLate 1.6 torch (transcribed)"

    def backend(f):
        return lambda *a: f(*a, backend="torch")
    return dict(colbert_scores=backend(scores.colbert_scores),
                colbert_scores_pairwise=backend(scores.colbert_scores_pairwise),
                colbert_kd_scores=backend(scores.colbert_kd_scores), rerank=rank.rerank), "PyLate torch"


# ------------------------------------------------------------------------------------------------ cases

def make_cases(args, np):
    rng = np.random.default_rng(args.seed)
    dim = 128
    n_docs = 200 if args.quick else 1000

    def unit(*shape):
        x = rng.standard_normal(shape, dtype=np.float32)
        x /= np.linalg.norm(x, axis=-1, keepdims=True)
        return x

    def prefix(lengths, width):
        return (np.arange(width) < np.asarray(lengths)[..., None]).astype(np.float32)

    q = unit(32, 32, dim)
    d = unit(n_docs, 180, dim)
    qm = prefix(rng.integers(8, 33, 32), 32)
    dm = prefix(rng.integers(50, 181, n_docs), 180)
    kd_docs = unit(32, 32, 180, dim)
    kd_dm = prefix(rng.integers(50, 181, (32, 32)), 180)
    n_pairs = 128 if args.quick else 512
    pq, pd = unit(n_pairs, 32, dim), unit(n_pairs, 180, dim)
    n_rr = 25 if args.quick else 100
    rr_q = list(unit(32, 32, dim))
    rr_docs = [[unit(int(n), dim) for n in rng.integers(50, 181, n_rr)] for _ in range(32)]
    rr_ids = [list(range(n_rr)) for _ in range(32)]
    return [
        dict(key="colbert_scores", title=f"colbert_scores, unmasked: 32 queries x 32 tokens vs {n_docs} docs x 180 "
                                         f"tokens, dim {dim}", fn="colbert_scores", args=(q, d)),
        dict(key="colbert_scores masked", title="colbert_scores, masked: the same, query masks keep 8..32 tokens, "
                                                "document masks 50..180", fn="colbert_scores", args=(q, d, qm, dm)),
        dict(key="colbert_kd_scores masked", title="colbert_kd_scores, masked: 32 queries x 32 tokens, each vs its own "
                                                   "32 candidates x 180 tokens (masks 50..180)",
             fn="colbert_kd_scores", args=(q, kd_docs, qm, kd_dm)),
        dict(key="colbert_scores_pairwise", title=f"colbert_scores_pairwise: {n_pairs} pairs, 32 x 180 tokens (3-D)",
             fn="colbert_scores_pairwise", args=(pq, pd)),
        dict(key="rerank", title=f"rerank: 32 queries x {n_rr} documents of 50..180 tokens (lists of arrays)",
             fn="rerank", args=(rr_ids, rr_q, rr_docs)),
    ]


def as_scores(out, np):
    """Scores of a call as float64: arrays / tensors, or rerank's lists (sorted per query, then concatenated)."""
    if isinstance(out, list):
        return np.concatenate([np.sort([r["score"] for r in row]) for row in out])
    return np.asarray(out, dtype=np.float64)


def to_torch(args, torch):
    return tuple(torch.from_numpy(a) if hasattr(a, "shape") else a for a in args)


def worker(args) -> None:
    T = args.worker
    import numpy as np
    import simkern
    from simkern.compat import pylate as shim

    notes = set()
    torch = peer = None
    label = "PyLate torch"
    try:
        import torch
        torch.set_num_threads(T)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
        peer, label = pylate_peer(torch)
    except ImportError as e:
        notes.add(f"PyLate's torch path skipped (ImportError: {e}); pip install torch")
    out = dict(threads=T, results=[], notes=[], kernels=simkern.kernel_names(), isa=simkern.active_isa())
    if torch is not None:
        out["torch"] = dict(version=torch.__version__, num_threads=torch.get_num_threads())
    rounds = args.rounds or (3 if args.quick else 5)
    target = 0.05 if args.quick else 0.2
    for case in make_cases(args, np):
        shim_fn = getattr(shim, case["fn"])
        methods = [dict(method="simkern.compat.pylate", fn=lambda f=shim_fn, a=case["args"]: f(*a, threads=T))]
        if peer is not None:
            targs = case["args"] if case["fn"] == "rerank" else to_torch(case["args"], torch)

            def call(f=peer[case["fn"]], a=targs):
                with torch.inference_mode():
                    return f(*a)
            methods.append(dict(method=label, fn=call))
        log(f"[{T}T] {case['key']}: " + ", ".join(m["method"] for m in methods))
        ref = as_scores(methods[0]["fn"](), np)
        for m in methods[1:]:
            got = as_scores(m["fn"](), np)
            m["max_rel_err"] = float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1), initial=0.0))
        time_group(methods, rounds, target)
        for m in methods:
            out["results"].append(dict(case=case["key"], title=case["title"], method=m["method"], reps=m["reps"],
                                       samples=m["samples"], median_s=m["median_s"], best_s=m["best_s"],
                                       max_rel_err=m.get("max_rel_err")))
    out["notes"] = sorted(notes)
    with open(args.worker_out, "w") as f:
        json.dump(out, f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test: fewer docs and pairs, 3 rounds")
    ap.add_argument("--threads", default="1", help="comma list of thread counts (default: 1)")
    ap.add_argument("--rounds", type=int, default=0, help="interleaved timing rounds (default 5, --quick 3)")
    ap.add_argument("--seed", type=int, default=0)
    add_common_args(ap)
    args = ap.parse_args()
    if args.worker is not None:
        worker(args)
        return
    threads = parse_threads(args.threads)
    extra = ["--seed", str(args.seed)] + (["--rounds", str(args.rounds)] if args.rounds else [])
    if args.quick:
        extra.append("--quick")
    t_all = time.perf_counter()
    workers, busy = run_children(threads, lambda T: run_worker(__file__, T, extra, args.keep_openblas_env))
    print()
    print_blas(workers, args.keep_openblas_env)
    for n in sorted({n for w in workers.values() for n in w["notes"]}):
        print(f"note      : {n}")
    for T, w in workers.items():
        if "torch" in w:
            print(f"torch ({T}T): {w['torch']['version']}, {w['torch']['num_threads']} thread(s)")
    print("Columns: med/best ms per call; ratio = this row's median / the shim's (> 1: the shim is faster); check = "
          f"max |peer - shim| / max(|shim|, 1) (<= {RTOL:g}).")
    print_load(busy, workers)
    summary = []
    cases = list(dict.fromkeys(r["case"] for w in workers.values() for r in w["results"]))
    for case in cases:
        title = next(r["title"] for w in workers.values() for r in w["results"] if r["case"] == case)
        print()
        print(f"== {title}")
        rows = []
        for T, w in sorted(workers.items()):
            res = [r for r in w["results"] if r["case"] == case]
            ours = res[0]
            for r in res:
                ratio = r["median_s"] / ours["median_s"]
                err = r["max_rel_err"]
                rows.append([r["method"], T, fmt_ms(r["median_s"]), fmt_ms(r["best_s"]),
                             "-" if r is ours else f"{ratio:.2f}x",
                             "ref" if err is None else f"ok {err:.0e}" if err <= RTOL else f"WARN {err:.1e}"])
                if r is not ours:
                    summary.append(dict(case=case, threads=T, peer=r["method"], ratio=ratio, ok=err <= RTOL))
        print_table(rows, ["method", "thr", "med ms", "best ms", "ratio", "check"], left=1)
    bad = [s for s in summary if s["ratio"] < 1.0]
    if summary:
        print("\ntarget (issue 17): the shim at least as fast as PyLate on the same call: "
              + ("MET on every case" if not bad else "NOT MET: " + ", ".join(f"{s['case']} ({s['threads']}T) "
                                                                            f"{s['ratio']:.2f}x" for s in bad)))
    print(f"\ntotal wall time {time.perf_counter() - t_all:.0f} s")
    write_json(args.json, threads, args.quick, busy, workers, summary=summary)


if __name__ == "__main__":
    main()
