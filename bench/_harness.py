"""Shared plumbing of the bench/ scripts: one child process per thread count (thread variables set before any
import), CPU / BLAS / load reporting, table printing, the --json output. Imported by every bench script."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS",
               "SIMKERN_NUM_THREADS")
OPENBLAS_TUNING_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def one_thread() -> None:
    """Every library's thread variables to 1 in this process: call before NumPy or any peer is imported (the
    single-process, one-thread scripts; the others set them per child in child_env)."""
    for var in THREAD_VARS:
        os.environ[var] = "1"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def n_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def proc_stat() -> list[int] | None:
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def steal_fraction(a: list[int] | None, b: list[int] | None) -> float | None:
    """Share of CPU time the hypervisor gave to other guests between two /proc/stat snapshots."""
    if not a or not b or len(a) < 8 or len(b) < 8:
        return None
    return (b[7] - a[7]) / max(sum(b) - sum(a), 1)


def cpu_busy(interval: float = 1.0) -> float | None:
    """CPUs' worth of work done by *other* processes over `interval` s (this one sleeps), from /proc/stat."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + (v[4] if len(v) > 4 else 0)   # total, idle + iowait
    try:
        t0, i0 = snap()
        time.sleep(interval)
        t1, i1 = snap()
    except (OSError, ValueError, IndexError):
        return None
    return (1.0 - (i1 - i0) / max(t1 - t0, 1)) * (os.cpu_count() or 1)


def parse_threads(spec: str) -> list[int]:
    out = []
    for part in spec.split(","):
        part = part.strip().lower()
        if not part:
            continue
        n = n_cpus() if part in ("all", "max") else int(part)
        if n < 1:
            raise SystemExit(f"--threads: bad value {part!r}")
        if n not in out:
            out.append(n)
    return sorted(out)


# ------------------------------------------------------------------------------------------ BLAS info

def _openblas_ctypes_info() -> list[dict]:
    """Fallback when threadpoolctl is missing: ask each loaded OpenBLAS for its core name and thread count."""
    import ctypes
    libs = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if "/" in line else ""
                if "openblas" in os.path.basename(path).lower() and path not in libs:
                    libs.append(path)
    except OSError:
        return []
    out = []
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        info = {"filepath": path, "internal_api": "openblas", "source": "ctypes"}
        for prefix, suffix in (("openblas_", ""), ("scipy_openblas_", "64_"), ("openblas_", "64_")):
            try:
                core = getattr(lib, f"{prefix}get_corename{suffix}")
                nthr = getattr(lib, f"{prefix}get_num_threads{suffix}")
            except AttributeError:
                continue
            core.restype = ctypes.c_char_p
            info["architecture"] = core().decode()
            info["num_threads"] = int(nthr())
            try:
                cfg = getattr(lib, f"{prefix}get_config{suffix}")
                cfg.restype = ctypes.c_char_p
                info["version"] = cfg().decode().strip()
            except AttributeError:
                pass
            break
        out.append(info)
    return out


def blas_info() -> list[dict]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return _openblas_ctypes_info()
    keep = ("internal_api", "num_threads", "architecture", "version", "filepath", "user_api")
    return [{k: d.get(k) for k in keep if d.get(k) is not None} | {"source": "threadpoolctl"}
            for d in threadpool_info()]


# -------------------------------------------------------------------------------------------- worker

def child_env(T: int, keep_openblas_env: bool) -> tuple[dict, list[str]]:
    """The environment of a T-thread child: every thread variable = T; OpenBLAS tuning variables removed unless
    kept (they slow a current NumPy on some CPUs)."""
    env = os.environ.copy()
    for v in THREAD_VARS:
        env[v] = str(T)
    removed = []
    if not keep_openblas_env:
        for v in OPENBLAS_TUNING_VARS:
            if v in env:
                removed.append(f"{v}={env.pop(v)}")
    return env, removed


def run_worker(script: str, T: int, worker_args: list[str], keep_openblas_env: bool) -> dict:
    """Run `script --worker T --worker-out PATH *worker_args` in a T-thread environment and return its JSON, with
    the removed variables and the hypervisor steal time during the run added."""
    env, removed = child_env(T, keep_openblas_env)
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        path = tmp.name
    cmd = [sys.executable, os.path.abspath(script), "--worker", str(T), "--worker-out", path, *worker_args]
    try:
        st0 = proc_stat()
        proc = subprocess.run(cmd, env=env)
        steal = steal_fraction(st0, proc_stat())
        if proc.returncode != 0:
            raise SystemExit(f"worker for {T} thread(s) failed with exit code {proc.returncode}")
        with open(path) as f:
            res = json.load(f)
    finally:
        os.unlink(path)
    res["removed_env"] = removed
    res["steal"] = steal
    return res


def add_common_args(ap) -> None:
    """Options every bench takes after its own ones."""
    import argparse

    ap.add_argument("--keep-openblas-env", action="store_true",
                    help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE in the children (default: unset them)")
    ap.add_argument("--json", metavar="PATH", help="also write raw samples and derived numbers as JSON")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)


def print_header(threads: list[int]) -> None:
    import numpy as np
    import simkern

    print(f"CPU       : {cpu_model()} ({n_cpus()} CPUs usable by this process, {os.cpu_count()} online)")
    print(f"Python    : {platform.python_version()}, NumPy {np.__version__}, threads timed: "
          f"{', '.join(map(str, threads))}")
    simkern.show_runtime()
    sys.stdout.flush()


def start_child(T: int) -> float | None:
    """Sample other CPU load, log the child's start, return the load."""
    busy = cpu_busy()
    log(f"--- child process with {T} thread(s) (other processes busy: "
        f"{'?' if busy is None else f'{busy:.2f}'} CPUs)")
    return busy


def run_children(threads: list[int], run_child) -> tuple[dict[int, dict], dict[int, float | None]]:
    """Print the header, then run one child per thread count (run_child(T) -> its JSON), sampling the other load
    before each. Returns (workers, busy) keyed by thread count."""
    print_header(threads)
    workers, busy = {}, {}
    for T in threads:
        busy[T] = start_child(T)
        workers[T] = run_child(T)
    return workers, busy


def print_blas(workers: dict[int, dict], keep_openblas_env: bool) -> None:
    w0 = next(iter(workers.values()))
    if w0.get("removed_env"):
        print(f"OpenBLAS  : unset in the children: {', '.join(w0['removed_env'])}")
    else:
        print("OpenBLAS  : OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE "
              + ("kept (--keep-openblas-env)" if keep_openblas_env else "were not set"))
    for T, w in workers.items():
        for b in w.get("blas", []):
            print(f"BLAS ({T}T) : {b.get('internal_api')} {b.get('version', '')} core={b.get('architecture')} "
                  f"threads={b.get('num_threads')} [{b.get('source')}] {os.path.basename(b.get('filepath', ''))}")


def print_load(busy: dict[int, float | None], workers: dict[int, dict]) -> None:
    """Other processes' load before each child and steal time during it, with a warning when either is high."""
    known = {T: b for T, b in busy.items() if b is not None}
    if known:
        print("other load: " + ", ".join(f"{b:.2f} CPUs busy just before the {T}T child" for T, b in known.items())
              + " (1 s sample of /proc/stat)")
    steals = {T: w["steal"] for T, w in workers.items() if w.get("steal") is not None}
    if steals:
        print("steal     : " + ", ".join(f"{100 * v:.1f}% of CPU time during the {T}T child" for T, v in steals.items())
              + " (time the hypervisor gave to other guests)")
    if max(known.values(), default=0) >= 0.2 or max(steals.values(), default=0) >= 0.05:
        print("WARNING   : other processes or guests were using the CPU; timings, multi-thread ones above all, are "
              "unreliable: rerun on an idle machine")


def run_metadata(threads: list[int], quick: bool, busy: dict, workers: dict) -> dict:
    """The common part of the --json output."""
    import numpy as np
    import simkern

    return dict(cpu=cpu_model(), cpus=n_cpus(), python=platform.python_version(), numpy=np.__version__,
                simkern=simkern.__version__, threads=threads, quick=quick,
                other_cpu_busy_before_child={str(k): v for k, v in busy.items()},
                steal_during_child={str(k): w.get("steal") for k, w in workers.items()},
                workers={str(k): v for k, v in workers.items()})


def write_json(path: str | None, threads: list[int], quick: bool, busy: dict, workers: dict, **extra) -> None:
    """The --json output (when a path was given): run_metadata plus the script's own entries (summary, ...)."""
    if not path:
        return
    with open(path, "w") as f:
        json.dump(dict(run_metadata(threads, quick, busy, workers), **extra), f, indent=1)
    print(f"wrote {path}")


def fmt_rate(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def fmt_ms(s: float) -> str:
    ms = s * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def print_table(rows: list[list[str]], header: list[str], left: int = 2) -> None:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join((h.ljust(w) if i < left else h.rjust(w))
                     for i, (h, w) in enumerate(zip(header, widths, strict=True)))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join((str(c).ljust(w) if i < left else str(c).rjust(w))
                        for i, (c, w) in enumerate(zip(r, widths, strict=True))))




SLEEP_BETWEEN = 0.01  # pause before each sample: spinning OpenMP / rayon / BLAS workers of the previous method go idle


def time_group(methods: list[dict], rounds: int, target: float) -> None:
    """Time each method dict's ``fn`` in interleaved rounds (the order rotated each round): after one warm-up call
    ``reps`` calls per sample make it last about ``target`` seconds; sets ``samples``, ``median_s`` and
    ``best_s`` (seconds per call) on each dict."""
    for m in methods:
        time.sleep(SLEEP_BETWEEN)
        t0 = time.perf_counter()
        m["fn"]()
        m["reps"] = max(1, int(round(target / max(time.perf_counter() - t0, 1e-6))))
        m["samples"] = []
    for r in range(rounds):
        k = r % len(methods)
        for m in methods[k:] + methods[:k]:
            time.sleep(SLEEP_BETWEEN)
            t0 = time.perf_counter()
            for _ in range(m["reps"]):
                m["fn"]()
            m["samples"].append((time.perf_counter() - t0) / m["reps"])
    for m in methods:
        s = sorted(m["samples"])
        m["median_s"], m["best_s"] = s[len(s) // 2], s[0]
