#!/usr/bin/env python3
"""simkern.cuda on a GPU: MaxSim, PQ search and FDE encoding against the usual GPU ways of computing them.

    python bench/bench_cuda.py                          # full run, writes bench/results/bench_cuda.json
    python bench/bench_cuda.py --quick                  # smaller shapes: a smoke test, not a measurement
    python bench/bench_cuda.py --out run.json --repeats 50 --sections peak,maxsim
    python bench/bench_cuda.py --allow-missing          # exit 0 (not 2) where torch with CUDA / simkern.cuda is missing

Needs a CUDA GPU, torch built with CUDA and simkern built with SIMKERN_ENABLE_CUDA=ON; without them it says why
and exits with code 2 (0 with --allow-missing). Optional peers, each recorded as "unavailable: <reason>" when
missing: flash-maxsim (Triton), faiss with GPU support, torch.compile (inductor).

Sections (--sections, default all, run in this order):

    peak     bf16 matmul peak of this GPU: a @ b, 8192 x 8192 x 8192, TFLOP/s = 2 M N K / time
    maxsim   bf16 queries and docs (dim 128, random L2-normalised rows, padded 3-D tensors, no masks), shapes
               text     1 query  x  1000 docs, Lq 32, Ld  300
               rerank   32 queries x 10000 docs, Lq 32, Ld  180     (--quick: 2000 docs)
               colpali  16 queries x  1000 docs, Lq 32, Ld 1024     (--quick: 250 docs)
             contenders: simkern.cuda.maxsim(check_finite=False) (the base of every ratio) and with the default
             check_finite=True; PyLate's formula in torch eager
             (torch.einsum("ash,bth->abst", q, d).max(dim=3).values.sum(dim=2), in bf16 like PyLate; chunked over
             docs only if the full similarity tensor does not fit); the same function under torch.compile (default
             mode, compiled outside the timing; timed in a last pass so that a slow compile cannot starve the other
             sections); flash-maxsim when importable. Each result is compared with simkern's:
             max |other - simkern| / max |simkern|; simkern itself with a float64 reference on a subset.
    pq       1,000,000 uint8 codes (--quick: 200,000), m 16, ksub 256, dim 128, 1000 queries (--quick: 100), k 10,
             random codebooks already on the GPU: simkern.cuda.pq_search (and pq_scan_topk alone); faiss GPU
             IVFPQ with one list (flat PQ: faiss has no GPU IndexPQ), trained on random data, same sizes (recall
             not compared); simkern's top-k ids and scores checked against the CPU (ProductQuantizer.adc + stable
             argsort, and PQIndex.search) on 10 queries
    fde      2000 documents x 300 tokens x 128 dims float32 (--quick: 500), FDE(128, num_repetitions=20,
             num_simhash_projections=5, projection_dimension=16): simkern.cuda.fde_encode_documents on a padded CUDA
             tensor against fde.encode_documents(list of arrays) on the CPU with 1 thread and with all threads;
             outputs compared bit for bit (np.array_equal)

Timing: warm-up calls (--warmup), then --repeats timed calls (default 20), each between torch.cuda.synchronize()
calls, timed with CUDA events on the current stream and with the host clock; tables show the medians (event
time for torch-stream work; host-clock time where a peer runs on its own stream (faiss) or on the CPU).
Speedup = other's time / simkern's time. Targets printed beside: simkern >= 3x torch eager and >= 1.5x
torch.compile on text and rerank, >= 1.2x flash-maxsim, >= 60 % of the measured bf16 matmul peak on colpali,
>= 1x faiss-gpu on PQ, >= 20x the one-thread CPU FDE encoder.

Every section and contender is guarded: a failure (an exception, torch.cuda.OutOfMemoryError -> "oom") is recorded
in the JSON and the run goes on; the JSON is rewritten after every contender, so a run killed by a timeout keeps
what it measured. --time-limit S skips what is left once S seconds have passed (recorded as "skipped").
Exit code 0 when it ran (whatever the targets say), 2 when the GPU stack is missing (0 with --allow-missing).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import cpu_model, n_cpus, print_table  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results", "bench_cuda.json")
SCHEMA = "simkern-bench-cuda/1"
SECTIONS = ("peak", "maxsim", "pq", "fde")

DIM = 128
PEAK_N = 8192
# name: (n_queries, n_docs, Lq, Ld) for a full run and for --quick
SHAPES: dict[str, tuple[tuple[int, int, int, int], tuple[int, int, int, int]]] = {
    "text": ((1, 1000, 32, 300), (1, 1000, 32, 300)),
    "rerank": ((32, 10000, 32, 180), (32, 2000, 32, 180)),
    "colpali": ((16, 1000, 32, 1024), (16, 250, 32, 1024)),
}
SHAPE_NOTES = {
    "text": "one query against a page of text passages (first-stage late interaction)",
    "rerank": "a reranking batch: 32 queries x 10000 candidate docs",
    "colpali": "the issue wrote '16 x 1000 x 1024 x 32'; read here as 16 queries x 1000 docs with Ld = 1024 doc "
               "patches (ColPali pages) and Lq = 32 query tokens",
}
# simkern (check_finite=False) against each peer: (peer, minimum speedup = peer time / simkern time)
MAXSIM_TARGETS = {
    "text": [("torch eager", 3.0), ("torch.compile", 1.5), ("flash-maxsim", 1.2)],
    "rerank": [("torch eager", 3.0), ("torch.compile", 1.5), ("flash-maxsim", 1.2)],
    "colpali": [("flash-maxsim", 1.2)],
}
PEAK_TARGETS = {"colpali": 60.0}   # simkern >= this % of the measured bf16 matmul peak
PQ_TARGET_VS_FAISS = 1.0
FDE_TARGET_VS_CPU1 = 20.0
TOL_FP32 = 1e-3    # relative agreement expected from float32-accumulating kernels (simkern, flash-maxsim)
TOL_BF16 = 2e-2    # ... from PyLate's formula, whose max and sum run in bf16
EAGER_CHUNK_BYTES = 4 << 30   # the chunked eager fallback keeps the (a, b, s, t) similarity tensor under this

PQ_M, PQ_KSUB, PQ_K = 16, 256, 10
FDE_LEN = 300
FDE_CONFIG = dict(num_repetitions=20, num_simhash_projections=5, projection_dimension=16)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Unavailable(Exception):
    """A peer that cannot run here (not installed, no GPU support): recorded as 'unavailable: <reason>'."""


# ----------------------------------------------------------------------------------------------- the run

class Run:
    """The state of one run: modules, options, deadline, the results dict and its JSON file."""

    def __init__(self, args: argparse.Namespace, torch: Any, cuda: Any, simkern: Any, np: Any) -> None:
        self.args, self.torch, self.cuda, self.simkern, self.np = args, torch, cuda, simkern, np
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + args.time_limit if args.time_limit else None
        self.oom = getattr(torch.cuda, "OutOfMemoryError", None)
        self.results: dict[str, Any] = {}
        self.refs: dict[str, Any] = {}   # simkern's MaxSim scores per shape (CPU tensors), for the compile pass

    # -- bookkeeping
    def out_of_time(self) -> bool:
        return self.deadline is not None and time.perf_counter() > self.deadline

    def save(self) -> None:
        self.results["elapsed_s"] = round(time.perf_counter() - self.t0, 2)
        derive(self.results)
        write_json(self.args.out, self.results)

    def free(self) -> None:
        self.torch.cuda.synchronize()
        self.torch.cuda.empty_cache()

    # -- timing
    def time_gpu(self, fn: Callable[[], Any], warmup: int | None = None, repeats: int | None = None
                 ) -> dict[str, Any]:
        """Warm-up calls, then timed calls each between device synchronisations: CUDA-event time on the current
        stream and host-clock time (what a caller waiting for the result sees). Medians in ms."""
        torch = self.torch
        warmup = self.args.warmup if warmup is None else warmup
        repeats = self.args.repeats if repeats is None else repeats
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        ev_ms, wall_ms = [], []
        for _ in range(max(1, repeats)):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            start.record()
            out = fn()
            end.record()
            torch.cuda.synchronize()
            wall_ms.append((time.perf_counter() - t0) * 1e3)
            ev_ms.append(start.elapsed_time(end))
            del out
        return timing_summary(ev_ms, wall_ms)

    def contender(self, table: dict[str, Any], name: str, setup: Callable[[], tuple[Callable[[], Any], dict]],
                  check: Callable[[Any], dict] | None = None, timer: Callable[..., dict] | None = None) -> Any:
        """Run one contender: ``setup()`` -> (fn, facts); one first call (its result goes to ``check``, whose
        dict is recorded), then the timing. Every failure is recorded in ``table[name]``; returns the first
        result or None."""
        torch = self.torch
        if self.out_of_time():
            table[name] = {"status": "skipped", "detail": "--time-limit reached"}
            self.save()
            return None
        log(f"  {name} ...")
        rec: dict[str, Any] = {}
        first = None
        try:
            fn, facts = setup()
            rec.update(facts)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            first = fn()
            torch.cuda.synchronize()
            rec["first_call_s"] = round(time.perf_counter() - t0, 4)
            if check is not None:
                try:
                    rec.update(check(first))
                except Exception as exc:  # noqa: BLE001 - a failing check is recorded, the timing still runs
                    rec["check_error"] = f"{type(exc).__name__}: {exc}"[:1000]
            rec.update((timer or self.time_gpu)(fn))
            rec["status"] = "ok"
        except Unavailable as exc:
            rec = {**rec, "status": "unavailable", "detail": f"unavailable: {exc}"[:2000]}
        except Exception as exc:  # noqa: BLE001 - every failure is recorded and the run goes on
            first = None
            if self.oom is not None and isinstance(exc, self.oom):
                rec.update(status="oom", detail=str(exc).split("\n")[0][:500])
            else:
                rec.update(status="error", detail=f"{type(exc).__name__}: {exc}"[:2000],
                           traceback=traceback.format_exc(limit=6)[-3000:])
            log(f"  {name}: {rec['status']}: {rec['detail'][:200]}")
        table[name] = rec
        try:
            self.free()
        except Exception as exc:  # noqa: BLE001 - a sticky CUDA error shows up here; keep what was measured
            rec.setdefault("after_error", f"{type(exc).__name__}: {exc}"[:500])
        self.save()
        if rec.get("status") == "ok":
            log(f"  {name}: {rec['median_ms']:.4g} ms (events), {rec['wall_median_ms']:.4g} ms (host clock)")
        return first


def timing_summary(ev_ms: list[float], wall_ms: list[float]) -> dict[str, Any]:
    out: dict[str, Any] = {"repeats": len(wall_ms), "wall_median_ms": statistics.median(wall_ms),
                           "wall_min_ms": min(wall_ms), "wall_samples_ms": [round(x, 5) for x in wall_ms]}
    if ev_ms:
        out.update(median_ms=statistics.median(ev_ms), min_ms=min(ev_ms), samples_ms=[round(x, 5) for x in ev_ms])
    else:  # host-clock only (CPU work, or a peer on its own stream)
        out.update(median_ms=out["wall_median_ms"], min_ms=out["wall_min_ms"], timed_with="host clock")
    return out


def time_host(fn: Callable[[], Any], repeats: int, warmup: int = 0, sync: Callable[[], None] | None = None
              ) -> dict[str, Any]:
    """Host-clock timing (CPU work, or GPU work on a stream CUDA events on torch's stream do not see: ``sync``
    synchronises the whole device before and after each call)."""
    for _ in range(warmup):
        fn()
    wall_ms = []
    for _ in range(max(1, repeats)):
        if sync:
            sync()
        t0 = time.perf_counter()
        out = fn()
        if sync:
            sync()
        wall_ms.append((time.perf_counter() - t0) * 1e3)
        del out
    return timing_summary([], wall_ms)


def ok(rec: Any) -> bool:
    return isinstance(rec, dict) and rec.get("status") == "ok" and rec.get("median_ms") is not None


def write_json(path: str, results: dict[str, Any]) -> None:
    """Write atomically (a run killed while writing keeps the previous version)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, default=str, allow_nan=True)
        f.write("\n")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------ environment

def probe() -> tuple[Any, Any, Any, Any, str | None]:
    """(torch, simkern.cuda, simkern, numpy, None) or (..., reason) when the GPU stack is not usable."""
    try:
        import numpy as np
        import simkern
        import simkern.cuda as cuda
    except Exception as exc:  # noqa: BLE001
        return None, None, None, None, f"simkern is not importable: {type(exc).__name__}: {exc}"
    try:
        import torch
    except Exception as exc:  # noqa: BLE001
        return None, cuda, simkern, np, f"torch is not importable ({type(exc).__name__}: {exc})"
    if not torch.cuda.is_available():
        return torch, cuda, simkern, np, (f"torch {torch.__version__} sees no CUDA device "
                                          f"(torch.version.cuda={torch.version.cuda})")
    if not cuda.is_available():
        return torch, cuda, simkern, np, f"simkern.cuda is not available: {cuda.device_info().get('reason')}"
    return torch, cuda, simkern, np, None


def version_of(module: str) -> str | None:
    try:
        import importlib.metadata

        return importlib.metadata.version(module)
    except Exception:  # noqa: BLE001
        return None


def machine(torch: Any, cuda: Any, simkern: Any, np: Any) -> dict[str, Any]:
    dev = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(dev)
    info: dict[str, Any] = {
        "device": torch.cuda.get_device_name(dev),
        "device_index": dev,
        "compute_capability": list(torch.cuda.get_device_capability(dev)),
        "memory_gib": round(props.total_memory / 2**30, 1),
        "multiprocessors": props.multi_processor_count,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": version_of("triton"),
        "flash_maxsim": version_of("flash-maxsim"),
        "faiss": version_of("faiss-gpu") or version_of("faiss-gpu-cu12") or version_of("faiss-cpu"),
        "bf16_reduced_precision_reduction": bool(
            getattr(torch.backends.cuda.matmul, "allow_bf16_reduced_precision_reduction", False)),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "simkern": simkern.__version__,
        "cpu": cpu_model(),
        "cpus": n_cpus(),
        "simkern_cuda": cuda.device_info(),
    }
    try:
        info["simkern_cpu_isa"] = simkern.active_isa() if hasattr(simkern, "active_isa") else \
            simkern.runtime.active_isa()
    except Exception as exc:  # noqa: BLE001
        info["simkern_cpu_isa"] = f"unknown ({exc})"
    return info


# ---------------------------------------------------------------------------------------------- peak

def section_peak(run: Run) -> None:
    torch = run.torch
    res: dict[str, Any] = {"what": f"torch.matmul bf16 {PEAK_N} x {PEAK_N} x {PEAK_N} (cuBLAS)",
                           "flops": 2 * PEAK_N**3}
    run.results["peak"] = res
    holder: dict[str, Any] = {}

    def setup():
        g = torch.Generator(device="cuda").manual_seed(run.args.seed)
        holder["a"] = torch.randn(PEAK_N, PEAK_N, device="cuda", dtype=torch.bfloat16, generator=g)
        holder["b"] = torch.randn(PEAK_N, PEAK_N, device="cuda", dtype=torch.bfloat16, generator=g)
        return (lambda: holder["a"] @ holder["b"]), {}

    table: dict[str, Any] = {}
    run.contender(table, "matmul", setup)
    holder.clear()
    rec = table["matmul"]
    res.update(rec)
    if ok(rec):
        res["tflops"] = res["flops"] / (rec["median_ms"] * 1e-3) / 1e12
        res["tflops_best"] = res["flops"] / (rec["min_ms"] * 1e-3) / 1e12
        log(f"bf16 matmul peak: {res['tflops']:.1f} TFLOP/s (median), {res['tflops_best']:.1f} (best)")
    run.save()


# -------------------------------------------------------------------------------------------- MaxSim

def make_pylate(torch: Any) -> Callable[[Any, Any], Any]:
    """PyLate's colbert_scores without masks: the (a, b, s, t) similarity tensor, max over doc tokens, sum over
    query tokens, in the inputs' dtype (a closure over the torch module, which torch.compile traces)."""

    def pylate_scores(q: Any, d: Any) -> Any:
        return torch.einsum("ash,bth->abst", q, d).max(dim=3).values.sum(dim=2)

    return pylate_scores


def rel_err(other: Any, ref: Any) -> float:
    """max |other - ref| / max |ref| (inf when the shapes differ or a value is not finite)."""
    other = other.float().reshape(ref.shape)
    diff = float((other - ref).abs().max())
    scale = float(ref.abs().max())
    return diff / scale if scale > 0 else diff


def maxsim_shape(run: Run, name: str) -> tuple[int, int, int, int]:
    return SHAPES[name][1 if run.args.quick else 0]


def maxsim_inputs(run: Run, name: str) -> tuple[Any, Any]:
    """Random L2-normalised bf16 rows (the same for a given seed and shape), generated on the GPU."""
    torch = run.torch
    nq, nd, lq, ld = maxsim_shape(run, name)
    g = torch.Generator(device="cuda").manual_seed(run.args.seed * 1000 + sorted(SHAPES).index(name))

    def unit(shape):
        x = torch.randn(shape, device="cuda", dtype=torch.float32, generator=g)
        return (x / x.norm(dim=-1, keepdim=True)).to(torch.bfloat16)

    q = unit((nq, lq, DIM))
    d = torch.cat([unit((min(1000, nd - s), ld, DIM)) for s in range(0, nd, 1000)]) if nd > 1000 else unit(
        (nd, ld, DIM))
    return q.contiguous(), d.contiguous()


def section_maxsim(run: Run, shapes: list[str]) -> None:
    """Pass 1: simkern, torch eager and flash-maxsim on every shape (torch.compile: pass 2, maxsim_compile)."""
    torch, cuda = run.torch, run.cuda
    sec = run.results.setdefault("maxsim", {"dtype": "bfloat16", "dim": DIM, "shapes": {},
                                            "targets_vs": {k: dict(v) for k, v in MAXSIM_TARGETS.items()},
                                            "targets_pct_peak": PEAK_TARGETS})
    for name in shapes:
        nq, nd, lq, ld = maxsim_shape(run, name)
        shape = sec["shapes"].setdefault(name, {
            "n_queries": nq, "n_docs": nd, "lq": lq, "ld": ld, "dim": DIM, "dtype": "bfloat16",
            "flops": 2 * nq * nd * lq * ld * DIM, "note": SHAPE_NOTES[name],
            "similarity_tensor_gib": round(nq * nd * lq * ld * 2 / 2**30, 2), "contenders": {}})
        c = shape["contenders"]
        log(f"maxsim {name}: {nq} queries x {nd} docs x Lq {lq} x Ld {ld} x dim {DIM} bf16")
        if run.out_of_time():
            shape["status"] = "skipped: --time-limit reached"
            run.save()
            continue
        try:
            q, d = maxsim_inputs(run, name)
        except Exception as exc:  # noqa: BLE001
            shape["status"] = f"inputs failed: {type(exc).__name__}: {exc}"[:1000]
            run.free()
            run.save()
            continue
        ref_holder: dict[str, Any] = {}

        def check_ref(out, q=q, d=d):
            """simkern against a float64 reference on a subset of queries and docs."""
            ref_holder["ref"] = out.float()
            a, b = min(nq, 4), min(nd, 256)
            exact = torch.einsum("ash,bth->abst", q[:a].double(), d[:b].double()).amax(dim=3).sum(dim=2)
            err = rel_err(out[:a, :b].double(), exact)
            return {"shape_out": list(out.shape), "dtype_out": str(out.dtype),
                    "rel_err_vs_float64_subset": err, "subset": [a, b], "accurate": err <= TOL_FP32}

        def check_vs(tol):
            def check(out):
                ref = ref_holder.get("ref")
                if ref is None:
                    return {"rel_err_vs_simkern": None, "note": "no simkern result to compare with"}
                err = rel_err(out, ref)
                return {"rel_err_vs_simkern": err, "tolerance": tol, "agrees": err <= tol}
            return check

        run.contender(c, "simkern", lambda: ((lambda: cuda.maxsim(q, d, check_finite=False)),
                                             {"call": "simkern.cuda.maxsim(q, d, check_finite=False)"}),
                      check=check_ref)
        run.contender(c, "simkern (check_finite=True)",
                      lambda: ((lambda: cuda.maxsim(q, d)), {"call": "simkern.cuda.maxsim(q, d)"}),
                      check=check_vs(TOL_FP32))
        run.contender(c, "torch eager", lambda: eager_setup(run, q, d), check=check_vs(TOL_BF16))
        run.contender(c, "flash-maxsim", lambda: flash_setup(torch, q, d), check=check_vs(TOL_FP32))
        if ref_holder.get("ref") is not None:
            run.refs[name] = ref_holder["ref"].cpu()  # for the torch.compile pass
        ref_holder.clear()
        run.free()
        run.save()


def eager_setup(run: Run, q: Any, d: Any) -> tuple[Callable[[], Any], dict]:
    """PyLate's formula on all docs at once; when that runs out of memory, over chunks of docs."""
    torch = run.torch
    pylate_scores = make_pylate(torch)
    try:
        pylate_scores(q, d)
        torch.cuda.synchronize()
        return (lambda: pylate_scores(q, d)), {"call": 'torch.einsum("ash,bth->abst", q, d).max(dim=3).values'
                                                       '.sum(dim=2) (bf16, all docs at once)'}
    except Exception as exc:  # noqa: BLE001
        if run.oom is None or not isinstance(exc, run.oom):
            raise
    run.free()
    nq, nd, lq, ld = q.shape[0], d.shape[0], q.shape[1], d.shape[1]
    chunk = max(1, EAGER_CHUNK_BYTES // (nq * lq * ld * 2))

    def chunked():
        return torch.cat([pylate_scores(q, d[s:s + chunk]) for s in range(0, nd, chunk)], dim=1)

    log(f"  torch eager: all docs at once ran out of memory; chunks of {chunk} docs")
    return chunked, {"call": f"PyLate's einsum formula over chunks of {chunk} docs (all docs at once: oom)",
                     "chunked": True}


def flash_setup(torch: Any, q: Any, d: Any) -> tuple[Callable[[], Any], dict]:
    """flash-maxsim's entry point, found at run time: flash_maxsim_batched(Q [Nq, Lq, d], D [B, Ld, d]) -> [Nq, B]
    for several queries, flash_maxsim(Q [Lq, d], D) -> [B] for one (the 0.2 API); else a function named maxsim."""
    try:
        import flash_maxsim as fm
    except Exception as exc:  # noqa: BLE001
        raise Unavailable(f"import flash_maxsim failed: {type(exc).__name__}: {exc}") from None
    public = sorted(n for n in dir(fm) if not n.startswith("_"))
    facts: dict[str, Any] = {"version": getattr(fm, "__version__", None) or version_of("flash-maxsim"),
                             "module_names": public[:60]}
    nq, nd = q.shape[0], d.shape[0]
    if nq > 1 and callable(getattr(fm, "flash_maxsim_batched", None)):
        fn, facts["call"] = (lambda: fm.flash_maxsim_batched(q, d)), "flash_maxsim.flash_maxsim_batched(q, d)"
    elif callable(getattr(fm, "flash_maxsim", None)):
        single = fm.flash_maxsim
        if nq == 1:
            fn, facts["call"] = (lambda: single(q[0], d).reshape(1, nd)), "flash_maxsim.flash_maxsim(q[0], d)"
        else:
            fn = lambda: torch.stack([single(q[i], d) for i in range(nq)])  # noqa: E731
            facts["call"] = "flash_maxsim.flash_maxsim(q[i], d) per query"
    elif callable(getattr(fm, "maxsim", None)):
        fn, facts["call"] = (lambda: fm.maxsim(q, d)), "flash_maxsim.maxsim(q, d)"
    else:
        raise Unavailable(f"no known entry point in flash_maxsim (names: {', '.join(public[:30])})")
    return fn, facts


def section_maxsim_compile(run: Run, shapes: list[str]) -> None:
    """Pass 2: PyLate's formula under torch.compile (default mode, static shapes, one compile per shape outside
    the timing)."""
    torch = run.torch
    sec = run.results.get("maxsim")
    if not sec:
        return
    refs = run.refs
    for name in shapes:
        shape = sec["shapes"].get(name)
        if shape is None or "status" in shape:
            continue
        log(f"maxsim {name}: torch.compile")
        if run.out_of_time():
            shape["contenders"]["torch.compile"] = {"status": "skipped", "detail": "--time-limit reached"}
            run.save()
            continue
        try:
            q, d = maxsim_inputs(run, name)
        except Exception as exc:  # noqa: BLE001
            shape["contenders"]["torch.compile"] = {"status": "error", "detail": f"inputs: {exc}"[:1000]}
            run.free()
            run.save()
            continue
        ref = refs.get(name)

        def setup(q=q, d=d):
            try:
                torch._dynamo.reset()
            except Exception:  # noqa: BLE001 - older torch: nothing to reset
                pass
            compiled = torch.compile(make_pylate(torch), dynamic=False)
            t0 = time.perf_counter()
            compiled(q, d)   # compile (and the first run) outside the timing
            torch.cuda.synchronize()
            return (lambda: compiled(q, d)), {"call": "torch.compile(pylate_scores, dynamic=False) (mode default)",
                                               "compile_s": round(time.perf_counter() - t0, 2)}

        def check(out, ref=ref):
            if ref is None:
                return {"rel_err_vs_simkern": None, "note": "no simkern result to compare with"}
            err = rel_err(out, ref.to(out.device))
            return {"rel_err_vs_simkern": err, "tolerance": TOL_BF16, "agrees": err <= TOL_BF16}

        run.contender(shape["contenders"], "torch.compile", setup, check=check)
        run.free()
    run.save()


# ------------------------------------------------------------------------------------------------ PQ

def section_pq(run: Run) -> None:
    torch, cuda, simkern, np = run.torch, run.cuda, run.simkern, run.np
    quick = run.args.quick
    n = 200_000 if quick else 1_000_000
    nq = 100 if quick else 1000
    m, ksub, k, dsub = PQ_M, PQ_KSUB, PQ_K, DIM // PQ_M
    sec = run.results.setdefault("pq", {"n": n, "n_queries": nq, "m": m, "ksub": ksub, "dim": DIM, "k": k,
                                        "metric": "l2", "contenders": {},
                                        "target_vs_faiss_gpu": PQ_TARGET_VS_FAISS,
                                        "ratio_basis": "host clock with device synchronisation (faiss runs on its "
                                                       "own stream)"})
    c = sec["contenders"]
    log(f"pq: {n} codes x m {m}, {nq} queries, k {k}")
    g = torch.Generator(device="cuda").manual_seed(run.args.seed + 7)
    codebooks = torch.randn((m, ksub, dsub), device="cuda", dtype=torch.float32, generator=g)
    codes = torch.randint(0, 256, (n, m), device="cuda", dtype=torch.uint8, generator=g)
    queries = torch.randn((nq, DIM), device="cuda", dtype=torch.float32, generator=g)
    sync = torch.cuda.synchronize

    def check_cpu(out):
        """The first 10 queries against the CPU: ProductQuantizer.adc + stable argsort (PQIndex.search's order:
        ascending distance, ties to the smaller id) and PQIndex.search itself."""
        scores, ids = out
        nc = min(10, nq)
        cb = codebooks.cpu().numpy()
        codes_np = codes.cpu().numpy()
        q10 = queries[:nc].cpu().numpy()
        pq = simkern.ProductQuantizer.from_codebooks(cb, "l2")
        dist = pq.adc(q10, codes_np)
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        ids_g, scores_g = ids[:nc].cpu().numpy(), scores[:nc].cpu().numpy()
        res = {"cpu_check_queries": nc,
               "ids_equal_cpu_adc": bool(np.array_equal(ids_g, order)),
               "scores_equal_cpu_adc": bool(np.array_equal(scores_g, np.take_along_axis(dist, order, axis=1)))}
        try:  # PQIndex over the same codes (adopted through private setters: the bench only)
            index = simkern.PQIndex(DIM, m)
            index.pq = pq
            index._set_contents(codes_np, None)
            d_i, i_i = index.search(q10, k)
            res["ids_equal_pqindex"] = bool(np.array_equal(ids_g, i_i))
            res["scores_equal_pqindex"] = bool(np.array_equal(scores_g, d_i))
        except Exception as exc:  # noqa: BLE001
            res["pqindex_check"] = f"not run: {type(exc).__name__}: {exc}"[:300]
        return res

    run.contender(c, "simkern pq_search", lambda: ((lambda: cuda.pq_search(queries, codebooks, codes, k)),
                                                   {"call": "simkern.cuda.pq_search(queries, codebooks, codes, 10) "
                                                            "(codebooks a float32 CUDA tensor)"}),
                  check=check_cpu)

    def scan_setup():
        tables = cuda.pq_distance_tables(queries, codebooks)
        return (lambda: cuda.pq_scan_topk(tables, codes, k)), {"call": "simkern.cuda.pq_scan_topk (tables ahead)"}

    run.contender(c, "simkern pq_scan_topk", scan_setup)

    def faiss_setup():
        try:
            import faiss
        except Exception as exc:  # noqa: BLE001
            raise Unavailable(f"faiss-gpu unavailable: import faiss failed: {type(exc).__name__}: {exc}") from None
        if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
            raise Unavailable("faiss-gpu unavailable: this faiss has no GPU support (faiss-cpu)")
        facts: dict[str, Any] = {"faiss_version": getattr(faiss, "__version__", None),
                                 "index": "GpuIndexIVFPQ, nlist 1, nprobe 1 (= flat PQ; faiss has no GPU IndexPQ)",
                                 "note": "trained on random data; its own codebooks and codes (same sizes), so "
                                         "results and recall are not compared"}
        res = faiss.StandardGpuResources()
        rng = np.random.default_rng(run.args.seed + 11)
        xt = rng.standard_normal((32768, DIM), dtype=np.float32)
        t0 = time.perf_counter()
        try:
            cfg = faiss.GpuIndexIVFPQConfig()
            cfg.device = torch.cuda.current_device()
            index = faiss.GpuIndexIVFPQ(res, DIM, 1, m, 8, faiss.METRIC_L2, cfg)
            facts["built_with"] = "GpuIndexIVFPQ(res, dim, 1, m, 8, METRIC_L2, config)"
        except Exception as exc:  # noqa: BLE001 - other constructor signatures: go through a CPU index
            cpu_index = faiss.IndexIVFPQ(faiss.IndexFlatL2(DIM), DIM, 1, m, 8)
            index = faiss.index_cpu_to_gpu(res, torch.cuda.current_device(), cpu_index)
            facts["built_with"] = f"index_cpu_to_gpu(IndexIVFPQ) ({type(exc).__name__}: {str(exc)[:200]})"
        index.train(xt)
        for s in range(0, n, 250_000):
            xb = torch.randn((min(250_000, n - s), DIM), device="cuda").cpu().numpy()
            index.add(xb)
        try:
            index.nprobe = 1
        except Exception:  # noqa: BLE001
            pass
        facts["build_s"] = round(time.perf_counter() - t0, 2)
        facts["ntotal"] = int(index.ntotal)
        xq = queries.cpu().numpy()
        held = {"res": res, "index": index, "q": xq}   # the resources live as long as the closure

        def search():
            return held["index"].search(held["q"], k)

        facts["input"] = "numpy (host queries; results copied back)"
        try:
            import faiss.contrib.torch_utils  # noqa: F401 - lets GPU indexes take torch CUDA tensors

            index.search(queries, k)
            held["q"] = queries
            facts["input"] = "torch CUDA tensor (faiss.contrib.torch_utils)"
        except Exception as exc:  # noqa: BLE001
            facts["torch_input"] = f"not used: {type(exc).__name__}: {str(exc)[:200]}"
        return search, facts

    def faiss_timer(fn):
        return time_host(fn, run.args.repeats, warmup=run.args.warmup, sync=sync)

    run.contender(c, "faiss-gpu IVFPQ(nlist=1)", faiss_setup, timer=faiss_timer)
    run.free()
    run.save()


# ----------------------------------------------------------------------------------------------- FDE

def section_fde(run: Run) -> None:
    torch, cuda, simkern, np = run.torch, run.cuda, run.simkern, run.np
    n_docs = 500 if run.args.quick else 2000
    threads_all = n_cpus()
    sec = run.results.setdefault("fde", {"n_docs": n_docs, "tokens_per_doc": FDE_LEN, "dim": DIM,
                                         "config": dict(FDE_CONFIG), "cpu_threads_all": threads_all,
                                         "target_vs_cpu_1_thread": FDE_TARGET_VS_CPU1, "contenders": {},
                                         "ratio_basis": "host clock (GPU: with device synchronisation)"})
    c = sec["contenders"]
    log(f"fde: {n_docs} docs x {FDE_LEN} tokens x {DIM}, R 20, k 5, d_proj 16")
    docs = np.random.default_rng(run.args.seed + 3).standard_normal((n_docs, FDE_LEN, DIM), dtype=np.float32)
    doc_list = list(docs)   # C-contiguous (300, 128) views
    fde = simkern.FDE(DIM, **FDE_CONFIG)
    sec["output_dim"] = int(fde.output_dim)
    holder: dict[str, Any] = {}
    sync = torch.cuda.synchronize

    def check_gpu(out):
        holder["gpu"] = out.cpu().numpy()
        return {"shape_out": list(out.shape)}

    dev_docs = torch.from_numpy(docs).to("cuda")
    run.contender(c, "simkern.cuda", lambda: ((lambda: cuda.fde_encode_documents(fde, dev_docs)),
                                              {"call": "simkern.cuda.fde_encode_documents(fde, docs (n, 300, 128) "
                                                       "float32 CUDA tensor)"}),
                  check=check_gpu)
    run.contender(c, "simkern.cuda (check_finite=False)",
                  lambda: ((lambda: cuda.fde_encode_documents(fde, dev_docs, check_finite=False)),
                           {"call": "simkern.cuda.fde_encode_documents(fde, docs, check_finite=False)"}))
    run.free()
    run.contender(c, "simkern.cuda incl. host->device copy",
                  lambda: ((lambda: cuda.fde_encode_documents(fde, torch.from_numpy(docs).to("cuda"))),
                           {"call": "fde_encode_documents(fde, torch.from_numpy(docs).to('cuda')) (pageable copy)"}),
                  timer=lambda fn: run.time_gpu(fn, repeats=min(run.args.repeats, 5)))

    def check_cpu(out):
        gpu = holder.get("gpu")
        if gpu is None:
            return {"bit_identical_to_gpu": None}
        return {"bit_identical_to_gpu": bool(np.array_equal(gpu, out)),
                "max_abs_diff_to_gpu": float(np.max(np.abs(gpu - out))) if gpu.shape == out.shape else None}

    for label, threads in (("cpu 1 thread", 1), (f"cpu {threads_all} threads", threads_all)):
        if threads == 1 or threads_all > 1:
            run.contender(c, label, lambda threads=threads: (
                (lambda: fde.encode_documents(doc_list, threads=threads)),
                {"call": f"fde.encode_documents(list of {n_docs} arrays, threads={threads})", "threads": threads}),
                check=check_cpu,
                timer=lambda fn: time_host(fn, run.args.cpu_repeats, warmup=0, sync=None))
    sync()
    time.sleep(0.5)   # simkern's CPU workers go idle before anything else is timed
    run.save()


# ------------------------------------------------------------------------------------------ derived numbers

def derive(results: dict[str, Any]) -> None:
    """Ratios, TFLOP/s, % of peak and target verdicts from the raw timings (recomputed at every save)."""
    peak = results.get("peak", {})
    peak_tf = peak.get("tflops") if peak.get("status") == "ok" else None
    verdicts: list[dict[str, Any]] = []
    ms = results.get("maxsim", {})
    for name, shape in ms.get("shapes", {}).items():
        c = shape.get("contenders", {})
        base = c.get("simkern")
        for rec in c.values():
            if ok(rec):
                rec["tflops"] = shape["flops"] / (rec["median_ms"] * 1e-3) / 1e12
                rec["pct_peak"] = 100 * rec["tflops"] / peak_tf if peak_tf else None
        speedups = {other: rec["median_ms"] / base["median_ms"] for other, rec in c.items()
                    if other != "simkern" and ok(rec) and ok(base)}
        shape["speedup_vs"] = speedups   # other's time / simkern's (check_finite=False) time
        targets = []
        for other, want in MAXSIM_TARGETS.get(name, []):
            val = speedups.get(other)
            status = c.get(other, {}).get("status", "not run")
            targets.append({"what": f"maxsim {name}: simkern >= {want:g}x {other}", "other": other, "target": want,
                            "value": val, "met": None if val is None else val >= want, "other_status": status})
        if name in PEAK_TARGETS:
            want = PEAK_TARGETS[name]
            val = base.get("pct_peak") if ok(base) else None
            targets.append({"what": f"maxsim {name}: simkern >= {want:g} % of the bf16 matmul peak", "target": want,
                            "value": val, "met": None if val is None else val >= want})
        shape["targets"] = targets
        verdicts += targets
    pq = results.get("pq")
    if pq:
        c = pq.get("contenders", {})
        base, fa = c.get("simkern pq_search"), c.get("faiss-gpu IVFPQ(nlist=1)")
        for rec in c.values():
            if ok(rec):
                t = rec.get("wall_median_ms", rec["median_ms"]) * 1e-3
                rec["qps"] = pq["n_queries"] / t
                rec["gcodes_per_s"] = pq["n_queries"] * pq["n"] / t / 1e9
        val = fa["wall_median_ms"] / base["wall_median_ms"] if ok(base) and ok(fa) else None
        pq["speedup_vs_faiss_gpu"] = val
        t = {"what": f"pq: simkern >= {PQ_TARGET_VS_FAISS:g}x faiss-gpu", "target": PQ_TARGET_VS_FAISS, "value": val,
             "met": None if val is None else val >= PQ_TARGET_VS_FAISS,
             "other_status": (fa or {}).get("status", "not run")}
        pq["targets"] = [t]
        verdicts.append(t)
    fde = results.get("fde")
    if fde:
        c = fde.get("contenders", {})
        base, cpu1 = c.get("simkern.cuda"), c.get("cpu 1 thread")
        for rec in c.values():
            if ok(rec):
                rec["docs_per_s"] = fde["n_docs"] / (rec["wall_median_ms"] * 1e-3)
        speed = {other: rec["wall_median_ms"] / base["wall_median_ms"] for other, rec in c.items()
                 if other != "simkern.cuda" and ok(rec) and ok(base)}
        fde["speedup_vs"] = speed
        val = speed.get("cpu 1 thread")
        identical = (cpu1 or {}).get("bit_identical_to_gpu")
        t = {"what": f"fde: simkern.cuda >= {FDE_TARGET_VS_CPU1:g}x the 1-thread CPU encoder",
             "target": FDE_TARGET_VS_CPU1, "value": val, "met": None if val is None else val >= FDE_TARGET_VS_CPU1,
             "bit_identical": identical}
        fde["targets"] = [t]
        verdicts.append(t)
    results["targets"] = verdicts


# ---------------------------------------------------------------------------------------------- report

def fmt(x: Any, spec: str = ".3g") -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "NO"
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def status_cell(rec: dict[str, Any]) -> str:
    s = rec.get("status", "?")
    if s == "ok":
        return "ok" + (" (chunked)" if rec.get("chunked") else "")
    detail = rec.get("detail", "")
    if not detail or s == "skipped":
        return s
    return detail[:60] if detail.startswith(s) else f"{s}: {detail[:50]}"


def target_cell(verdict: dict[str, Any] | None) -> str:
    if not verdict:
        return ""
    mark = {True: "met", False: "MISSED", None: "n/a"}[verdict["met"]]
    return f">={verdict['target']:g}x {mark}"


def print_report(results: dict[str, Any]) -> None:
    m = results.get("machine", {})
    print(f"GPU       : {m.get('device')} (sm_{''.join(map(str, m.get('compute_capability', [])))}, "
          f"{m.get('multiprocessors')} SMs, {m.get('memory_gib')} GiB); torch {m.get('torch')} (CUDA "
          f"{m.get('torch_cuda')}), triton {m.get('triton')}")
    sc = m.get("simkern_cuda", {})
    print(f"simkern   : {m.get('simkern')}, cuda build {sc.get('build')}, driver {sc.get('driver_version')}, "
          f"runtime {sc.get('runtime_version')}; CPU {m.get('cpu')} ({m.get('cpus')} CPUs, ISA "
          f"{m.get('simkern_cpu_isa')})")
    a = results.get("args", {})
    print(f"timing    : {a.get('warmup')} warm-up + {a.get('repeats')} timed calls, medians; "
          f"{'--quick (smaller shapes: a smoke test)' if a.get('quick') else 'full shapes'}")
    peak = results.get("peak")
    if peak:
        if ok(peak):
            print(f"bf16 peak : {peak['tflops']:.1f} TFLOP/s median ({peak['tflops_best']:.1f} best), "
                  f"{peak['what']}, {peak['median_ms']:.3f} ms")
        else:
            print(f"bf16 peak : {status_cell(peak)}")
    ms = results.get("maxsim")
    if ms:
        print("\nMaxSim (bf16, dim 128; speedup = other's time / simkern's check_finite=False time; rel err = "
              "max |x - simkern| / max |simkern|, simkern's own row: against float64 on a subset)")
        rows = []
        for name, shape in ms.get("shapes", {}).items():
            targets = {t["other"]: t for t in shape.get("targets", []) if "other" in t}
            label = f"{name} {shape['n_queries']}x{shape['n_docs']}x{shape['lq']}x{shape['ld']}"
            if shape.get("status"):
                rows.append([label, "-", shape["status"][:70], "", "", "", "", "", "", ""])
            for cname, rec in shape.get("contenders", {}).items():
                err = rec.get("rel_err_vs_simkern", rec.get("rel_err_vs_float64_subset"))
                speed = shape.get("speedup_vs", {}).get(cname)
                rows.append([label, cname, status_cell(rec), fmt(rec.get("median_ms"), ".4g"),
                             fmt(rec.get("wall_median_ms"), ".4g"), fmt(rec.get("tflops"), ".1f"),
                             fmt(rec.get("pct_peak"), ".1f"),
                             "base" if cname == "simkern" else fmt(speed, ".2f"),
                             target_cell(targets.get(cname)), fmt(err, ".1e")])
        print_table(rows, ["shape", "contender", "status", "ms", "host ms", "TFLOP/s", "% peak", "speedup",
                           "target", "rel err"], left=3)
    pq = results.get("pq")
    if pq:
        print(f"\nPQ search: {pq['n']} codes x m {pq['m']} (8-bit), {pq['n_queries']} queries, k {pq['k']}, l2 "
              "(ratio on host-clock times with device sync)")
        rows = []
        base = pq["contenders"].get("simkern pq_search", {})
        for cname, rec in pq["contenders"].items():
            ratio = (rec["wall_median_ms"] / base["wall_median_ms"]) if ok(rec) and ok(base) else None
            rows.append([cname, status_cell(rec), fmt(rec.get("median_ms"), ".4g"),
                         fmt(rec.get("wall_median_ms"), ".4g"), fmt(rec.get("qps"), ".4g"),
                         fmt(rec.get("gcodes_per_s"), ".3g"), "base" if cname == "simkern pq_search" else
                         fmt(ratio, ".2f")])
        print_table(rows, ["contender", "status", "ms", "host ms", "QPS", "Gcodes/s", "other/simkern"], left=2)
        checks = {k: v for k, v in base.items() if k.startswith(("ids_equal", "scores_equal", "pqindex", "check"))}
        if checks:
            print("CPU check : " + ", ".join(f"{k}={fmt(v)}" for k, v in checks.items()))
    fde = results.get("fde")
    if fde:
        print(f"\nFDE encode_documents: {fde['n_docs']} docs x {fde['tokens_per_doc']} tokens x {fde['dim']}, "
              f"R 20, k 5, d_proj 16 -> {fde.get('output_dim')} dims (ratio on host-clock times)")
        rows = []
        for cname, rec in fde["contenders"].items():
            speed = fde.get("speedup_vs", {}).get(cname)
            rows.append([cname, status_cell(rec), fmt(rec.get("median_ms"), ".4g"),
                         fmt(rec.get("wall_median_ms"), ".4g"), fmt(rec.get("docs_per_s"), ".4g"),
                         "base" if cname == "simkern.cuda" else fmt(speed, ".2f"),
                         fmt(rec.get("bit_identical_to_gpu"))])
        print_table(rows, ["contender", "status", "ms", "host ms", "docs/s", "other/simkern", "identical"], left=2)
    verdicts = results.get("targets", [])
    if verdicts:
        print("\nTargets:")
        for t in verdicts:
            mark = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
            extra = f" ({t['other_status']})" if t.get("other_status") not in (None, "ok") else ""
            extra += f", bit-identical {fmt(t['bit_identical'])}" if "bit_identical" in t else ""
            print(f"  {t['what']}: {fmt(t['value'], '.3g')} -> {mark}{extra}")
    errors = results.get("errors", [])
    for e in errors:
        print(f"section error: {e.get('section')}: {e.get('detail', '')[:200]}")
    print(f"\ntotal {results.get('elapsed_s')} s")
    sys.stdout.flush()


# ------------------------------------------------------------------------------------------------ main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", "--json", dest="out", default=None,
                    help=f"JSON results file (default {os.path.relpath(DEFAULT_OUT)})")
    ap.add_argument("--quick", action="store_true",
                    help="smaller shapes (rerank 2000 docs, colpali 250, PQ 200k codes / 100 queries, FDE 500 docs)")
    ap.add_argument("--repeats", type=int, default=20, help="timed calls per contender (median; default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls before the timing (default 3)")
    ap.add_argument("--cpu-repeats", type=int, default=3, help="timed calls of the CPU FDE encoder (default 3)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"subset of {','.join(SECTIONS)}")
    ap.add_argument("--shapes", default=",".join(SHAPES), help=f"MaxSim shapes, subset of {','.join(SHAPES)}")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile contender")
    ap.add_argument("--time-limit", type=float, default=0.0,
                    help="seconds: skip what is left after this long (recorded as skipped); 0 = no limit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--allow-missing", action="store_true",
                    help="exit 0 (not 2) when torch with CUDA or simkern.cuda is unavailable")
    args = ap.parse_args(argv)
    args.out_given = args.out is not None
    args.out = args.out or DEFAULT_OUT
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    bad = [s for s in args.sections if s not in SECTIONS] + [s for s in args.shapes if s not in SHAPES]
    if bad:
        ap.error(f"unknown sections / shapes: {', '.join(bad)}")
    if args.repeats < 1 or args.warmup < 0 or args.cpu_repeats < 1:
        ap.error("--repeats and --cpu-repeats must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    torch, cuda, simkern, np, missing = probe()
    if missing:
        code = 0 if args.allow_missing else 2
        print(f"bench_cuda: cannot run here: {missing}. This benchmark needs a CUDA GPU, torch with CUDA and simkern "
              f"built with SIMKERN_ENABLE_CUDA=ON (tools/gpu_check.sh does all of it on a GPU machine). "
              f"{'--allow-missing: exit 0' if args.allow_missing else 'Exit 2 (--allow-missing: 0)'}.",
              file=sys.stderr)
        if args.out_given:
            info = cuda.device_info() if cuda is not None else None
            write_json(args.out, {"schema": SCHEMA, "status": "unavailable", "reason": missing,
                                  "started_utc": started.isoformat(timespec="seconds"), "simkern_cuda": info})
        return code

    run = Run(args, torch, cuda, simkern, np)
    run.results.update(schema=SCHEMA, status="running", started_utc=started.isoformat(timespec="seconds"),
                       command=" ".join([os.path.basename(sys.argv[0]), *(sys.argv[1:] if argv is None else argv)]),
                       args={k: v for k, v in vars(args).items() if k != "out_given"}, errors=[])
    try:
        run.results["machine"] = machine(torch, cuda, simkern, np)
    except Exception as exc:  # noqa: BLE001
        run.results["machine"] = {"error": f"{type(exc).__name__}: {exc}"}
    run.save()
    log(f"bench_cuda: {run.results['machine'].get('device')}; results -> {args.out}")

    def guarded(section: str, fn: Callable[..., None], *a: Any) -> None:
        try:
            fn(run, *a)
        except Exception as exc:  # noqa: BLE001 - a failing section is recorded and the others still run
            log(f"section {section} failed: {type(exc).__name__}: {exc}")
            run.results["errors"].append({"section": section, "detail": f"{type(exc).__name__}: {exc}"[:2000],
                                          "traceback": traceback.format_exc(limit=8)[-4000:]})
            try:
                run.free()
            except Exception:  # noqa: BLE001
                pass
            run.save()

    if "peak" in args.sections:
        guarded("peak", section_peak)
    if "maxsim" in args.sections:
        guarded("maxsim", section_maxsim, args.shapes)
    if "pq" in args.sections:
        guarded("pq", section_pq)
    if "fde" in args.sections:
        guarded("fde", section_fde)
    if "maxsim" in args.sections:
        if args.no_compile:
            for shape in run.results.get("maxsim", {}).get("shapes", {}).values():
                shape["contenders"]["torch.compile"] = {"status": "skipped", "detail": "--no-compile"}
        else:
            guarded("maxsim-compile", section_maxsim_compile, args.shapes)
    run.results["status"] = "done"
    run.results["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    run.save()
    print_report(run.results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
