"""The thread pool: exceptions, concurrency from Python threads (GIL released), fork safety."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import numpy as np
import pytest
import simkern
from levels import SANITIZED
from simkern import _core
from strategies import make_tokens


def test_every_task_runs_once_on_a_valid_thread():
    owners = _core._pool_probe(200, 4, -1, 0.05)
    assert len(owners) == 200
    assert set(owners) <= {0, 1, 2, 3}
    assert min(owners) >= 0
    assert set(_core._pool_probe(20, 1, -1, 0.0)) == {0}


def test_worker_exception_is_raised_in_the_caller():
    for fail_at in (0, 7, 99):
        with pytest.raises(RuntimeError, match=f"task {fail_at} failed"):
            _core._pool_probe(100, 3, fail_at, 0.0)
    assert len(_core._pool_probe(10, 3, -1, 0.0)) == 10  # the pool still works afterwards


def _workload():
    rng = np.random.default_rng(11)
    queries = [make_tokens(rng, int(n), 64, "normal") for n in rng.integers(1, 33, 8)]
    docs = [make_tokens(rng, int(n), 64, "normal") for n in rng.integers(1, 120, 300)]
    return simkern.Ragged.from_list(queries), simkern.Ragged.from_list(docs)


def test_concurrent_python_threads_get_correct_results():
    q, d = _workload()
    want = simkern.maxsim(q, d, threads=1)
    results, errors = [], []

    def worker():
        try:
            for _ in range(5):
                results.append(simkern.maxsim(q, d, threads=2))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    assert len(results) == 20
    for r in results:
        np.testing.assert_array_equal(r, want)


def _child(conn):
    q, d = _workload()
    conn.send(simkern.maxsim(q, d, threads=2))
    conn.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Python 3.12+ warns about fork() with threads
def test_pool_works_in_a_forked_child():
    q, d = _workload()
    want = simkern.maxsim(q, d, threads=2)  # the parent's pool has running workers now
    ctx = mp.get_context("fork")
    parent_conn, child_conn = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child_conn,))
    proc.start()
    assert parent_conn.poll(120), "forked child did not answer (pool deadlock after fork?)"
    got = parent_conn.recv()
    proc.join(30)
    assert proc.exitcode == 0
    np.testing.assert_array_equal(got, want)


def test_batch_calls_release_the_gil():
    # The main thread keeps looping (and time-stamping) while a worker thread runs a long single-threaded maxsim.
    # Were the GIL held during the call, the main loop would stall for the whole call: one gap as long as the
    # call. With the GIL released, the gaps stay at the scale of the interpreter's switch interval.
    rng = np.random.default_rng(3)
    q = simkern.Ragged(make_tokens(rng, 32 * 32, 128, "normal"), np.arange(33, dtype=np.int64) * 32)
    n_docs = 100 if SANITIZED else 400
    docs = simkern.Ragged(make_tokens(rng, n_docs * 150, 128, "normal"), np.arange(n_docs + 1, dtype=np.int64) * 150)
    finished = threading.Event()
    call = {}

    def worker():
        call["start"] = time.perf_counter()
        simkern.maxsim(q, docs, threads=1)
        call["end"] = time.perf_counter()
        finished.set()

    stamps = [time.perf_counter()]
    t = threading.Thread(target=worker)
    t.start()
    while not finished.is_set():
        stamps.append(time.perf_counter())
    t.join(60)
    seconds = call["end"] - call["start"]
    inside = [call["start"]] + [s for s in stamps if call["start"] < s < call["end"]] + [call["end"]]
    largest_gap = float(np.max(np.diff(inside)))
    assert seconds > 0.05, "workload too small to tell"
    assert largest_gap < 0.5 * seconds, (largest_gap, seconds)


_INTERRUPT_SCRIPT = r"""
import os, signal, threading, time
import numpy as np
import simkern
# Python leaves SIGINT alone when it starts with SIGINT ignored (e.g. under `cmd &` in a non-interactive shell, as
# some CI runners launch jobs): install the default KeyboardInterrupt handler so the test sees what a terminal does.
signal.signal(signal.SIGINT, signal.default_int_handler)
rng = np.random.default_rng(0)
q = simkern.Ragged(rng.standard_normal((64 * 32, 128)).astype(np.float32), np.arange(65) * 32)
n_docs = 300 if os.environ.get("SIMKERN_STAGED_SANITIZERS") == "1" else 1200  # tests/levels.py SANITIZED
docs = simkern.Ragged(rng.standard_normal((n_docs * 150, 128)).astype(np.float32), np.arange(n_docs + 1) * 150)
full = []
for _ in range(2):  # the faster of two uninterrupted calls (the first one also pays for warm-up)
    t0 = time.perf_counter()
    simkern.maxsim(q, docs, threads=2)
    full.append(time.perf_counter() - t0)
full = min(full)
result = None
for attempt in range(3):  # a loaded VM can delay the timer thread past the end of the call: try again
    threading.Timer(0.1 * full, os.kill, (os.getpid(), signal.SIGINT)).start()
    t0 = time.perf_counter()
    try:
        simkern.maxsim(q, docs, threads=2)
        time.sleep(full)  # a late signal lands here, outside the call: not what is tested
    except KeyboardInterrupt:
        elapsed = time.perf_counter() - t0
        if elapsed < full:
            result = ("INTERRUPTED", full, elapsed)
            break
if result is None:
    print("NOT INTERRUPTED", full)
else:
    print(*result)
simkern.maxsim(q[:1], docs[:3], threads=2)  # the pool still works
print("OK")
"""


def test_ctrl_c_interrupts_a_long_batch_call():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _INTERRUPT_SCRIPT], capture_output=True, text=True, timeout=300,
                         check=True).stdout.split()
    assert out[0] == "INTERRUPTED", out
    full, interrupted_after = float(out[1]), float(out[2])
    assert interrupted_after < 0.6 * full, (interrupted_after, full)
    assert out[-1] == "OK"
