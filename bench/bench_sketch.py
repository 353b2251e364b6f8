#!/usr/bin/env python3
"""Sketched least squares with an l_inf guarantee: simkern against LAPACK solvers, normal equations and SciPy's
CountSketch, plus the FWHT against a NumPy FWHT.

    python bench/bench_sketch.py                # full run (about 15 minutes on 2 cores, most of it in LAPACK)
    python bench/bench_sketch.py --quick        # smoke test (n = 2^15, 2^17)
    python bench/bench_sketch.py --threads 1 --png bench/sketch.png

Problems: A ~ N(0, 1) (n x d, float64), b = A x0 + N(0, 1). For every (n, d) in {2^17, 2^20} x {32, 64, 128}:
- exact solvers: NumPy lstsq (LAPACK gelsd), SciPy lstsq gelsy, Householder QR (numpy.linalg.qr + triangular
  solve), normal equations + Cholesky (A^T A, scipy cho_solve; squares the condition number);
- for m in {4d, 16d, 32d}: simkern.lstsq_sketched with srht / countsketch (and gaussian where m n d is small),
  SciPy clarkson_woodruff_transform (CountSketch) of A and b with one seed + lstsq of the m x d problem, and the
  transform alone (simkern.sketch of A) against a memcpy of A (numpy.copyto into a preallocated array);
- sketch-and-precondition (srht, m = 4d, tol 1e-10): time, iterations, error.
Achieved eps = ||x - x*||_inf / (||A x* - b|| ||A^+|| / sqrt(d)), x* from gelsd, ||A^+|| from the eigenvalues of A^T A.

FWHT: simkern.fwht of a 2^20 x 64 float64 array (axis 0) and of a 2^22 vector, against a NumPy FWHT (the
reshape-and-butterfly loop: log2(n) vectorised passes) and a memcpy.

eps vs m (1 thread): n = 2^15, d = 64, m in {2, 4, 8, 16, 32} d, 8 seeds, designs gauss / cauchy-rows / spike (see
tests/test_lstsq_sketched.py), kinds srht, gaussian, countsketch, sparse_sign and SciPy's CountSketch; median and max
eps per m, plotted with the sqrt(d/m) law and the reported eps_bound (--png, default bench/sketch.png).

Timing: exact solvers at n = 2^20 run once (they take seconds), everything else best and median of 3-5 calls.
Every thread count runs in its own child process with the thread variables set before any import; OpenBLAS gets
the same thread count as simkern.
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
    write_json,
)

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = dict(n=2**20, d=64, factor=16, vs_gelsd=20.0, transform_vs_memcpy=3.0, fwht_vs_numpy=3.0)


def timed(fn, reps):
    samples = []
    out = None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        samples.append(time.perf_counter() - t0)
    s = sorted(samples)
    return out, s[0], s[len(s) // 2]


def numpy_fwht(x):
    """The usual NumPy FWHT along axis 0: log2(n) passes, each a vectorised butterfly on a reshaped view."""
    y = x.copy()
    n = y.shape[0]
    h = 1
    while h < n:
        v = y.reshape(n // (2 * h), 2, h, -1)
        a = v[:, 0].copy()
        v[:, 0] += v[:, 1]
        v[:, 1] = a - v[:, 1]
        h *= 2
    return y


def worker(args) -> None:
    T = args.worker
    import numpy as np
    import scipy.linalg as sla
    import simkern

    notes = set()
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(T)
    except ImportError:
        notes.add("threadpoolctl missing: BLAS threads follow OPENBLAS_NUM_THREADS only")
    from _harness import blas_info
    out = dict(threads=T, results=[], fwht=[], eps=[], notes=[], blas=blas_info(), kernels=simkern.kernel_names())
    ns = [2**15, 2**17] if args.quick else [2**17, 2**20]
    ds = [32, 64] if args.quick else [32, 64, 128]
    reps = 3 if args.quick else 5
    rng = np.random.default_rng(args.seed)
    for n in ns:
        for d in ds:
            a = rng.standard_normal((n, d))
            b = a @ rng.standard_normal(d) + rng.standard_normal(n)
            exact_reps = 1 if n >= 2**20 else 3
            rows = []

            def add(method, m, best, med, x, iters=None):
                rows.append(dict(n=n, d=d, method=method, m=m, best_s=best, median_s=med, x=x, iterations=iters))

            log(f"[{T}T] n={n} d={d}: exact solvers")
            x, best, med = timed(lambda: np.linalg.lstsq(a, b, rcond=None)[0], exact_reps)
            add("numpy lstsq (gelsd)", None, best, med, x)
            x_star = x
            x, best, med = timed(lambda: sla.lstsq(a, b, lapack_driver="gelsy", check_finite=False)[0], exact_reps)
            add("scipy lstsq (gelsy)", None, best, med, x)

            def qr_solve():
                q, r = np.linalg.qr(a)
                return sla.solve_triangular(r, q.T @ b, check_finite=False)
            x, best, med = timed(qr_solve, exact_reps)
            add("Householder QR", None, best, med, x)

            def normal_eqs():
                return sla.cho_solve(sla.cho_factor(a.T @ a, check_finite=False), a.T @ b, check_finite=False)
            x, best, med = timed(normal_eqs, max(exact_reps, 3))
            add("normal eqs + Cholesky", None, best, med, x)
            gram_eigs = np.linalg.eigvalsh(a.T @ a)
            scale = np.linalg.norm(a @ x_star - b) / np.sqrt(gram_eigs[0]) / np.sqrt(d)
            dst = np.empty_like(a)
            _, best, med = timed(lambda: np.copyto(dst, a), reps)
            add("memcpy of A (numpy.copyto)", None, best, med, None)
            del dst
            for factor in (4, 16, 32):
                m = factor * d
                log(f"[{T}T] n={n} d={d} m={m}")
                for kind in ("srht", "countsketch", "gaussian"):
                    if kind == "gaussian" and (n > 2**17 or m * n * d > 2**33):
                        continue
                    r = reps if kind != "gaussian" else 1
                    res, best, med = timed(lambda k=kind: simkern.lstsq_sketched(a, b, m=m, kind=k, seed=1,
                                                                                  threads=T), r)
                    add(f"simkern {kind} solve", m, best, med, res.x)
                _, best, med = timed(lambda: simkern.sketch(a, m, threads=T), reps)
                add("simkern srht transform of A", m, best, med, None)

                def scipy_cw():
                    sa = sla.clarkson_woodruff_transform(a, m, rng=1)
                    sb = sla.clarkson_woodruff_transform(b[:, None], m, rng=1)[:, 0]
                    return np.linalg.lstsq(sa, sb, rcond=None)[0]
                x, best, med = timed(scipy_cw, reps)
                add("scipy clarkson_woodruff + lstsq", m, best, med, x)
            res, best, med = timed(lambda: simkern.lstsq_sketched(a, b, m=4 * d, method="precondition", seed=1,
                                                                  threads=T), 1 if n >= 2**20 else 3)
            add("simkern srht precondition+LSQR", 4 * d, best, med, res.x, res.iterations)
            for row in rows:
                xr = row.pop("x")
                row["eps"] = None if xr is None else float(np.abs(xr - x_star).max() / scale)
                row["rel_err"] = None if xr is None else float(np.abs(xr - x_star).max() / np.abs(x_star).max())
            out["results"] += rows
            del a, b
    # FWHT against NumPy
    log(f"[{T}T] fwht")
    for shape in ([2**16, 64], [2**18]) if args.quick else ([2**20, 64], [2**22]):
        x = rng.standard_normal(shape)
        dst = np.empty_like(x)
        _, b_sk, m_sk = timed(lambda: simkern.fwht(x, threads=T), reps)
        _, b_np, m_np = timed(lambda: numpy_fwht(x), 3)
        _, b_cp, m_cp = timed(lambda: np.copyto(dst, x), reps)
        check = float(np.abs(simkern.fwht(x) - numpy_fwht(x)).max())
        out["fwht"].append(dict(shape=shape, simkern=[b_sk, m_sk], numpy=[b_np, m_np], memcpy=[b_cp, m_cp],
                                max_diff=check))
    if T == 1 and not args.no_eps:
        n, d = (2**13, 32) if args.quick else (2**15, 64)
        seeds = 3 if args.quick else 8
        sys.path.insert(0, os.path.join(HERE, "..", "tests"))
        from reference import lstsq_design  # the designs of tests/test_lstsq_sketched.py
        for name in ("gauss", "cauchy-rows", "spike"):
            a, b = lstsq_design(name, n, d, args.seed)
            x_star = np.linalg.lstsq(a, b, rcond=None)[0]
            scale = np.linalg.norm(a @ x_star - b) / np.linalg.svd(a, compute_uv=False)[-1] / np.sqrt(d)
            log(f"[{T}T] eps vs m: {name}")
            for factor in (2, 4, 8, 16, 32):
                m = factor * d
                for kind in ("srht", "gaussian", "countsketch", "sparse_sign", "scipy countsketch"):
                    errs, bound = [], None
                    for seed in range(seeds):
                        if kind == "scipy countsketch":
                            sa = sla.clarkson_woodruff_transform(a, m, rng=seed)
                            sb = sla.clarkson_woodruff_transform(b[:, None], m, rng=seed)[:, 0]
                            x = np.linalg.lstsq(sa, sb, rcond=None)[0]
                        else:
                            res = simkern.lstsq_sketched(a, b, m=m, kind=kind, seed=seed)
                            x, bound = res.x, res.eps_bound
                        errs.append(float(np.abs(x - x_star).max() / scale))
                    out["eps"].append(dict(design=name, n=n, d=d, m=m, kind=kind, errs=errs, eps_bound=bound))
    out["notes"] = sorted(notes)
    with open(args.worker_out, "w") as f:
        json.dump(out, f)


def plot(eps_rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        print("note      : matplotlib missing: no plot")
        return
    designs = sorted({r["design"] for r in eps_rows}, key=["gauss", "cauchy-rows", "spike"].index)
    fig, axes = plt.subplots(1, len(designs), figsize=(5 * len(designs), 4.2), sharey=True)
    for ax, name in zip(np.atleast_1d(axes), designs):
        rows = [r for r in eps_rows if r["design"] == name]
        d = rows[0]["d"]
        ms = sorted({r["m"] for r in rows})
        for kind, style in (("srht", "o-"), ("gaussian", "s-"), ("countsketch", "^-"), ("sparse_sign", "v-"),
                            ("scipy countsketch", "x--")):
            kr = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["m"])
            if not kr:
                continue
            line, = ax.plot([r["m"] / d for r in kr], [np.median(r["errs"]) for r in kr], style, label=f"{kind} median")
            ax.plot([r["m"] / d for r in kr], [max(r["errs"]) for r in kr], style[0], color=line.get_color(),
                    alpha=0.5, markerfacecolor="none")
        grid = np.array(ms) / d
        ax.plot(grid, np.sqrt(1 / grid), "k:", label="sqrt(d/m)")
        ax.plot(grid, 3 * np.sqrt(1 / grid), "k--", alpha=0.4, label="3 sqrt(d/m)")
        bounds = sorted({(r["m"], r["eps_bound"]) for r in rows if r["eps_bound"] is not None})
        ax.plot([m / d for m, _ in bounds], [e for _, e in bounds], "r-", alpha=0.6, label="eps_bound (rule)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{name}: n={rows[0]['n']}, d={d} (filled: median, open: max)")
        ax.set_xlabel("m / d")
        ax.grid(True, which="both", alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("achieved eps_inf")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test: n in {2^15, 2^17}, d in {32, 64}")
    ap.add_argument("--threads", default="1,all", help="comma list of thread counts (default: 1,all)")
    ap.add_argument("--no-eps", action="store_true", help="skip the eps-vs-m statistics")
    ap.add_argument("--png", default=os.path.join(HERE, "sketch.png"), help="plot path (default bench/sketch.png)")
    ap.add_argument("--seed", type=int, default=0)
    add_common_args(ap)
    args = ap.parse_args()
    if args.worker is not None:
        worker(args)
        return
    threads = parse_threads(args.threads)
    extra = ["--seed", str(args.seed)] + (["--quick"] if args.quick else []) + (["--no-eps"] if args.no_eps else [])
    t_all = time.perf_counter()
    workers, busy = run_children(threads, lambda T: run_worker(__file__, T, extra, args.keep_openblas_env))
    print()
    print_blas(workers, args.keep_openblas_env)
    for n in sorted({n for w in workers.values() for n in w["notes"]}):
        print(f"note      : {n}")
    print("Columns: ms = best (median) of the timed calls; eps = achieved l_inf error ratio (see the docstring); "
          "x gelsd / x chol = gelsd's / normal equations' time over this row's (higher is faster).")
    print_load(busy, workers)
    summary = {"targets": []}
    for T in sorted(workers):
        res = workers[T]["results"]
        for n, d in sorted({(r["n"], r["d"]) for r in res}):
            rows = [r for r in res if r["n"] == n and r["d"] == d]
            gelsd = next(r for r in rows if r["method"].startswith("numpy lstsq"))
            chol = next(r for r in rows if r["method"].startswith("normal eqs"))
            memcpy = next(r for r in rows if r["method"].startswith("memcpy"))
            print()
            print(f"== n = {n}, d = {d}, {T} thread(s)")
            table = []
            for r in rows:
                eps = "-" if r["eps"] is None else (f"{r['eps']:.3g}" if r["eps"] > 1e-6 else f"{r['eps']:.1e}")
                extra_col = ""
                if r["method"].endswith("transform of A"):
                    extra_col = f"{r['best_s'] / memcpy['best_s']:.2f}x memcpy"
                elif r["iterations"] is not None:
                    extra_col = f"{r['iterations']} iterations, rel err {r['rel_err']:.1e}"
                table.append([r["method"], "-" if r["m"] is None else f"{r['m']} ({r['m'] // d}d)",
                              f"{fmt_ms(r['best_s'])} ({fmt_ms(r['median_s'])})", eps,
                              f"{gelsd['best_s'] / r['best_s']:.1f}x", f"{chol['best_s'] / r['best_s']:.2f}x",
                              extra_col])
            print_table(table, ["method", "m", "ms", "eps", "x gelsd", "x chol", "note"], left=2)
            if T == 1 and n == TARGET["n"] and d == TARGET["d"]:
                m = TARGET["factor"] * d
                sk = next(r for r in rows if r["method"] == "simkern srht solve" and r["m"] == m)
                tr = next(r for r in rows if r["method"] == "simkern srht transform of A" and r["m"] == m)
                checks = [("srht solve vs gelsd", gelsd["best_s"] / sk["best_s"], TARGET["vs_gelsd"], ">="),
                          ("srht solve vs normal eqs + Cholesky", chol["best_s"] / sk["best_s"], 1.0, ">="),
                          ("transform / memcpy of A", tr["best_s"] / memcpy["best_s"], TARGET["transform_vs_memcpy"],
                           "<=")]
                for what, value, goal, op in checks:
                    met = value >= goal if op == ">=" else value <= goal
                    print(f"   target (1T, m = 16d): {what}: {value:.2f}x (target {op} {goal}x) "
                          f"{'MET' if met else 'NOT MET'}")
                    summary["targets"].append(dict(what=what, value=value, goal=goal, met=met))
    for T in sorted(workers):
        print()
        print(f"== FWHT, float64, {T} thread(s): simkern.fwht vs a NumPy reshape FWHT")
        table = []
        for f in workers[T]["fwht"]:
            ratio = f["numpy"][0] / f["simkern"][0]
            table.append([" x ".join(map(str, f["shape"])), f"{fmt_ms(f['simkern'][0])} ({fmt_ms(f['simkern'][1])})",
                          f"{fmt_ms(f['numpy'][0])}", f"{ratio:.1f}x", f"{f['simkern'][0] / f['memcpy'][0]:.1f}x",
                          f"{f['max_diff']:.1e}"])
            if T == 1:
                summary["targets"].append(dict(what=f"fwht {f['shape']} vs NumPy", value=ratio,
                                               goal=TARGET["fwht_vs_numpy"], met=ratio >= TARGET["fwht_vs_numpy"]))
        print_table(table, ["shape", "simkern ms", "numpy ms", "speed-up", "/ memcpy", "max |diff|"], left=1)
    eps_rows = next((w["eps"] for w in workers.values() if w["eps"]), [])
    if eps_rows:
        import numpy as np
        print()
        print("== achieved eps_inf vs m (1 thread; median / max over seeds; law = sqrt(d/m); bound = eps_bound)")
        for name in ("gauss", "cauchy-rows", "spike"):
            rows = [r for r in eps_rows if r["design"] == name]
            if not rows:
                continue
            d = rows[0]["d"]
            ms = sorted({r["m"] for r in rows})
            kinds = list(dict.fromkeys(r["kind"] for r in rows))
            table = []
            for m in ms:
                bound = next(r["eps_bound"] for r in rows if r["m"] == m and r["eps_bound"] is not None)
                cells = [f"{m // d}d", f"{np.sqrt(d / m):.3f}", f"{bound:.3f}"]
                for k in kinds:
                    r = next(r for r in rows if r["m"] == m and r["kind"] == k)
                    cells.append(f"{np.median(r['errs']):.2f} / {max(r['errs']):.2f}")
                table.append(cells)
            print(f"-- {name}: n = {rows[0]['n']}, d = {d}, {len(rows[0]['errs'])} seeds")
            print_table(table, ["m", "law", "bound"] + kinds, left=1)
        plot(eps_rows, args.png)
    print(f"\ntotal wall time {time.perf_counter() - t_all:.0f} s")
    write_json(args.json, threads, args.quick, busy, workers, summary=summary)


if __name__ == "__main__":
    main()
