"""Fuzz every target (tools/fuzz/targets.py) for a fixed time; exit 1 on any new finding.

    python tools/fuzz/run.py [--seconds 60] [--targets a,b] [--work DIR] [--stage STAGE] [--asan-stage STAGE]

1. make_seeds.py builds small real indexes and saves them under WORK/seeds (nothing binary is committed);
2. each target runs in its own process (atheris/libFuzzer with coverage of the simkern Python code, or the
   random-mutation fallback without atheris) for --seconds, on a working copy of its seed corpus, with
   -timeout=20 (an input slower than that is a finding) and -rss_limit_mb=4096 (so is one that makes a loader
   allocate more);
3. with --asan-stage, the corpus the fuzzer ended with (seeds + every input that reached new code) and any crash
   input are replayed on that sanitizer build (tools/sanitize/staged.py --sanitizers): atheris' coverage does not
   work with GCC's ASan runtime preloaded, so the fuzzing itself runs on the normal build and the sanitizers check
   what it found;
4. a run that exits non-zero - an exception other than ValueError/TypeError, an assertion of the target, a signal,
   an ASan/UBSan report, a timeout, running out of memory - is a finding: its log tail and crash-* input are
   printed and kept under WORK/<target>/. Replay one with
   ``python tools/fuzz/fuzz_target.py NAME WORK/seeds --repro --strict WORK/NAME/crash-...``.
   Findings listed in targets.KNOWN (each with an xfail test in tests/test_fuzz_regressions.py) are printed and
   do not fail the run.

--stage STAGE fuzzes a staged simkern instead of the installed one. Default 60 s per target (.ci/run passes its
own budget).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
STAGED = os.path.join(ROOT, "tools", "sanitize", "staged.py")
TARGETS = ["hnsw_file", "hnsw_pickle", "pq_index_file", "ivfpq_file", "pq_pickle", "multivector_dir", "ragged",
           "hnswlib_file"]


def _tail(path: str, lines: int = 60) -> str:
    with open(path, errors="replace") as f:
        return "\n".join("    " + line for line in f.read().splitlines()[-lines:])


def _known(path: str) -> list[str]:
    with open(path, errors="replace") as f:
        text = f.read()
    return sorted({line.split("known finding ", 1)[1].replace("; continuing", "").strip()
                   for line in text.splitlines() if "known finding " in line})


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # our lines in order with the subprocesses' output
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=60, help="fuzzing time per target (default 60)")
    ap.add_argument("--targets", default=",".join(TARGETS), help="comma-separated subset")
    ap.add_argument("--work", help="working folder (default: a new temporary folder, kept when there are findings)")
    ap.add_argument("--stage", help="fuzz the simkern staged in this folder (tools/sanitize/staged.py)")
    ap.add_argument("--asan-stage", help="replay corpora and crashes on this staged sanitizer build")
    args = ap.parse_args()
    names = [t for t in args.targets.split(",") if t]
    unknown = set(names) - set(TARGETS)
    if unknown:
        ap.error(f"unknown targets {sorted(unknown)}; known: {TARGETS}")
    work = args.work or tempfile.mkdtemp(prefix="simkern-fuzz-run-")
    seeds = os.path.join(work, "seeds")
    py = [sys.executable] + ([STAGED, args.stage] if args.stage else [])
    os.environ["SIMKERN_FUZZ_TMP"] = os.path.join(work, "tmp")  # the targets' scratch files (targets._work_dir)
    subprocess.run(py + [os.path.join(HERE, "make_seeds.py"), seeds], check=True)
    findings = []
    for name in names:
        out = os.path.join(work, name)
        corpus = os.path.join(out, "corpus")
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(os.path.join(seeds, name, "corpus"), corpus)
        cmd = py + [os.path.join(HERE, "fuzz_target.py"), name, seeds, corpus,
                    f"-max_total_time={args.seconds}", "-timeout=20", "-rss_limit_mb=4096",
                    f"-artifact_prefix={out}/", "-print_final_stats=1"]
        start = time.monotonic()
        log_path = os.path.join(out, "log.txt")
        with open(log_path, "w") as log:
            try:  # the fuzzer's own limit, plus time to start, run the seeds and report
                rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=args.seconds + 120).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        took = time.monotonic() - start
        with open(log_path, errors="replace") as f:
            stats = [line for line in f if line.startswith("stat::number_of_executed_units")]
        execs = stats[-1].split(":")[-1].strip() if stats else "?"
        crashes = sorted(glob.glob(os.path.join(out, "crash-*")) + glob.glob(os.path.join(out, "timeout-*"))
                         + glob.glob(os.path.join(out, "oom-*")))
        status = f"{took:.0f} s, {execs} inputs, corpus {len(os.listdir(corpus))} files"
        failed = rc != 0 or crashes
        if failed:
            print(f"fuzz: {name}: FINDING (exit {rc}, {status}); inputs: {', '.join(crashes) or 'none saved'}")
            print(_tail(log_path))
        if args.asan_stage:
            replay_log = os.path.join(out, "replay-asan.txt")
            inputs = sorted(glob.glob(os.path.join(corpus, "*"))) + crashes
            start = time.monotonic()
            with open(replay_log, "w") as log:
                try:
                    rrc = subprocess.run([sys.executable, STAGED, "--sanitizers", args.asan_stage,
                                          os.path.join(HERE, "fuzz_target.py"), name, seeds, "--repro"] + inputs,
                                         stdout=log, stderr=subprocess.STDOUT, timeout=600).returncode
                except subprocess.TimeoutExpired:
                    rrc = "timeout"
            status += f"; {len(inputs)} replayed under ASan/UBSan in {time.monotonic() - start:.0f} s"
            if rrc != 0:
                failed = True
                print(f"fuzz: {name}: FINDING under ASan/UBSan (exit {rrc}); log {replay_log}")
                print(_tail(replay_log, 80))
        if failed:
            findings.append(name)
        else:
            print(f"fuzz: {name}: ok ({status})")
        for line in sorted(set(_known(log_path) + (_known(replay_log) if args.asan_stage else []))):
            print(f"    known finding, not failing (see its xfail test): {line}")
    if findings:
        print(f"fuzz: findings in {', '.join(findings)}; logs and inputs kept under {work}")
        return 1
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
