"""``python -m simkern bench [family ...] [--quick] [--update] [--out DIR]``: run the bench/ scripts of a source
checkout and write one Markdown report (machine, every table, PNG plots).

Families: maxsim, pq, ivfpq, fde, hnsw, sketch, multivector, isa, distributed, and the compat-* shims (default: all;
isa: every family at every ISA level; distributed needs the ``ray`` extra). The scripts live in the repository's
bench/ folder (they import the peers of the ``bench`` extra), so this command runs from a source checkout: it looks
for bench/ in the current directory, then next to the installed package's source tree (``--bench-dir`` to set it).
The report is ``DIR/RESULTS.md`` (default DIR: bench/), plots beside it: hnsw.png (QPS vs recall), sketch.png
(eps_inf vs m), ivfpq.png (QPS vs recall@10 per configuration), multivector.png (recall@10 vs latency, recall@100 vs
candidates), maxsim.png (GFLOP/s and % of the sgemm peak). ``--update`` re-runs only the named families and replaces
their sections of an existing report, keeping the others (each section says when it ran).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time

from ._validate import atomic_write

FAMILIES = {
    "maxsim": ("bench_maxsim.py", []),
    "pq": ("bench_pq.py", []),
    "ivfpq": ("bench_ivfpq.py", []),
    "fde": ("bench_fde.py", []),
    "hnsw": ("bench_hnsw.py", ["--threads", "1,2"]),
    "sketch": ("bench_sketch.py", []),
    "multivector": ("bench_multivector.py", []),
    "isa": ("bench_isa.py", []),
    # simkern.distributed on a local Ray cluster: Ray Data encoding against one process, shards against one index
    "distributed": ("bench_distributed.py", []),
    # the simkern.compat shims against the packages they replace, call for call, one thread
    "compat-hnswlib": ("bench_compat_hnswlib.py", []),
    "compat-pylate": ("bench_compat_pylate.py", []),
    "compat-maxsim-cpu": ("bench_compat_maxsim_cpu.py", []),
    "compat-muvera": ("bench_fde.py", ["--compat"]),
}
PEERS = ["numpy", "scipy", "faiss-cpu", "hnswlib", "usearch", "nanopq", "maxsim-cpu", "muvera-python", "fastembed",
         "ray", "torch", "matplotlib"]


def _find_bench_dir(explicit: str | None) -> str:
    candidates = [explicit] if explicit else [os.path.join(os.getcwd(), "bench"),
                                              os.path.join(os.path.dirname(__file__), "..", "..", "bench")]
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, "bench_maxsim.py")):
            return os.path.abspath(c)
    raise SystemExit("python -m simkern bench runs the scripts of a source checkout: no bench/ folder with "
                     "bench_maxsim.py found (run it from the repository root or pass --bench-dir)")


def _machine() -> list[str]:
    from . import runtime
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    feats = [k for k, v in runtime.capabilities().items() if v is True]
    versions = []
    for p in PEERS:
        try:
            versions.append(f"{p} {importlib.metadata.version(p)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{p} (not installed)")
    from . import __version__
    return [f"- CPU: {cpu}, {cores} cores usable ({os.cpu_count()} online)",
            f"- ISA: active {runtime.active_isa()}, available {', '.join(runtime.available_isas())}; "
            f"features {' '.join(feats)}",
            f"- Python {platform.python_version()} on {platform.platform()}; simkern {__version__}",
            f"- Peers and tools: {', '.join(versions)}"]


def _plot_maxsim(json_path: str, png: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    with open(json_path) as f:
        summary = json.load(f)["summary"]
    cases = list(summary)
    fig, axes = plt.subplots(1, len(cases), figsize=(4.5 * len(cases), 4), squeeze=False)
    for ax, case in zip(axes[0], cases):
        rows = [r for r in summary[case]["rows"] if r["threads"] == 1 and r.get("pct_peak") is not None]
        labels = [f"{r['method']} {r['dtype']}" for r in rows]
        ax.barh(range(len(rows)), [r["pct_peak"] for r in rows], color="tab:blue")
        for i, r in enumerate(rows):
            ax.text(r["pct_peak"], i, f" {r['gflops']:.0f} GF/s", va="center", fontsize=7)
        ax.set_yticks(range(len(rows)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("% of the 1-thread sgemm peak")
        ax.set_title(f"MaxSim {case} (1 thread)", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    return True


def _plot_multivector(json_path: str, png: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter
    except ImportError:
        return False
    with open(json_path) as f:
        data = json.load(f)
    worker = next(iter(data["workers"].values()))
    sets = list(worker["sets"])
    fig, axes = plt.subplots(2, len(sets), figsize=(4.8 * len(sets), 8), squeeze=False)
    for col, name in enumerate(sets):
        rows = [r for r in worker["rows"] if r["set"] == name]
        top, bottom = axes[0][col], axes[1][col]
        for method in dict.fromkeys(r["method"] for r in rows):
            mr = [r for r in rows if r["method"] == method]
            style = "k*" if method.startswith("brute") else "o-"
            top.plot([r["latency_s"] * 1e3 for r in mr], [r["r10"] for r in mr], style, label=method, markersize=5)
            mr = [r for r in mr if r.get("r100") is not None and not method.startswith("brute")]
            if mr:
                bottom.plot([r["candidates"] for r in mr], [r["r100"] for r in mr], "o-", label=method, markersize=5)
        top.set_xlabel("ms per query (1 thread)")
        top.set_ylabel("recall@10 vs exact MaxSim")
        bottom.set_xlabel("candidates reranked (SV heuristic: docs in the union)")
        bottom.set_ylabel("recall@100 vs exact MaxSim")
        bottom.axhline(0.9, color="gray", lw=0.8, ls="--")
        for ax in (top, bottom):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(name, fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    return True


def _sections(lines: list[str]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Split a report into its preamble and (name, lines) sections: name = the first word of each "## " heading
    outside a ``` block (a script's own output, fenced in its section, may print "## " lines)."""
    pre: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    fenced = False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        if line.startswith("## ") and not fenced:
            sections.append((line[3:].split(" ")[0], [line]))
        elif sections:
            sections[-1][1].append(line)
        else:
            pre.append(line)
    return pre, sections


def _merge_report(path: str, new_lines: list[str], families: list[str], started: datetime.datetime) -> list[str]:
    """The existing report with the sections of ``families`` (and the machine) replaced by the new run's."""
    with open(path) as f:
        old_pre, old = _sections(f.read().rstrip("\n").split("\n"))
    _, new = _sections(new_lines)
    fresh = dict(new)
    merged = [(name, fresh.pop(name) if name in fresh else body) for name, body in old]
    merged += list(fresh.items())  # families the old report did not have
    pre = [line for line in old_pre if line.strip()]
    pre += ["", f"Updated by `python -m simkern bench --update {' '.join(families)}` on {started:%Y-%m-%d %H:%M} UTC "
            "(those sections and the machine; the others are from the earlier run).", ""]
    return pre + [line for _, body in merged for line in body]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simkern bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("families", nargs="*", help=f"subset of {', '.join(FAMILIES)} (default: all)")
    ap.add_argument("--quick", action="store_true", help="pass --quick to every script (smoke test, not a measurement)")
    ap.add_argument("--out", default=None, help="report folder (default: the bench/ folder)")
    ap.add_argument("--bench-dir", default=None, help="the repository's bench/ folder")
    ap.add_argument("--update", action="store_true",
                    help="replace only these families' sections of an existing DIR/RESULTS.md, keep the others")
    args = ap.parse_args(argv)
    # "linf", the family's old name (its section is "sketch" now, like its kernels and its Python module)
    args.families = ["sketch" if f == "linf" else f for f in args.families]
    unknown = [f for f in args.families if f not in FAMILIES]
    if unknown:
        ap.error(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
    families = args.families or list(FAMILIES)
    if args.update and not args.families:
        ap.error("--update needs the families to re-run")
    bench_dir = _find_bench_dir(args.bench_dir)
    out = os.path.abspath(args.out or bench_dir)
    os.makedirs(out, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    lines = [f"# simkern benchmark report{' (--quick: a smoke test, not a measurement)' if args.quick else ''}", "",
             f"Generated by `python -m simkern bench {' '.join(sys.argv[2:] if argv is None else argv)}` on "
             f"{started:%Y-%m-%d %H:%M} UTC. Every table below is the script's own output (ratios of timings taken "
             "side by side in one process per thread count); bench/README.md explains each script's method.", "",
             "## Machine", ""] + _machine() + [""]
    for fam in families:
        script, extra = FAMILIES[fam]
        json_path = os.path.join(out, f".{fam}.json")
        cmd = [sys.executable, os.path.join(bench_dir, script), *extra]
        if fam != "hnsw":  # bench_hnsw.py writes its plot itself and has no --json
            cmd += ["--json", json_path]
        if args.quick:
            cmd.append("--quick")
        if fam == "hnsw":
            cmd += ["--plot", os.path.join(out, "hnsw.png")]
        if fam == "sketch":
            cmd += ["--png", os.path.join(out, "sketch.png")]
        if fam == "ivfpq":
            cmd += ["--plot", os.path.join(out, "ivfpq.png")]
        print(f"--- {fam}: {' '.join(cmd)}", file=sys.stderr, flush=True)
        t0, section_start = time.perf_counter(), datetime.datetime.now(datetime.timezone.utc)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        took = time.perf_counter() - t0
        lines += [f"## {fam} (`bench/{script}`, {took:.0f} s, run {section_start:%Y-%m-%d %H:%M} UTC"
                  f"{', exit code ' + str(proc.returncode) if proc.returncode else ''})",
                  "", "```", proc.stdout.rstrip(), "```", ""]
        plot = None
        if fam == "maxsim" and proc.returncode == 0 and _plot_maxsim(json_path, os.path.join(out, "maxsim.png")):
            plot = "maxsim.png"
        elif fam == "multivector" and proc.returncode == 0 and _plot_multivector(json_path,
                                                                                  os.path.join(out, "multivector.png")):
            plot = "multivector.png"
        elif fam in ("hnsw", "sketch", "ivfpq") and os.path.exists(os.path.join(out, f"{fam}.png")):
            plot = f"{fam}.png"
        if plot:
            lines += [f"![{fam}]({plot})", ""]
        if os.path.exists(json_path):
            os.remove(json_path)
    report = os.path.join(out, "RESULTS.md")
    if args.update and os.path.exists(report):
        lines = _merge_report(report, lines, families, started)
    text = ("\n".join(lines) + "\n").encode()
    atomic_write(report, lambda f: f.write(text))  # an interrupted run leaves the previous report whole
    print(f"wrote {report}")
    return 0
