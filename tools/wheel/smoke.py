"""Smoke test of an installed simkern on a machine where the test suite is too slow to run (an aarch64 wheel under
qemu-aarch64, tools/wheel/qemu_smoke.sh): every family once, small sizes, each checked against NumPy, and every
SIMD level the CPU has against the scalar one (integer outputs identical, floats within their stated bounds).

    python smoke.py            (needs only numpy, ml_dtypes and the installed simkern)
Prints one line per check and exits 1 on the first failure.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile

import ml_dtypes
import numpy as np
import simkern

rng = np.random.default_rng(0)


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"smoke: {'ok  ' if ok else 'FAIL'} {name}{'  ' + detail if detail else ''}", flush=True)
    if not ok:
        sys.exit(1)


def per_isa(run):
    """{isa: run()} for every level this CPU has (max_isa caps the dispatch)."""
    out = {}
    for isa in simkern.available_isas():
        with simkern.max_isa(isa):
            out[isa] = run()
    return out


def maxsim() -> None:
    q = [rng.standard_normal((n, 64)).astype(np.float32) for n in (1, 5, 17)]
    d = [rng.standard_normal((n, 64)).astype(np.float32) for n in (3, 8, 33, 1)]
    ref = np.array([[(qi.astype(np.float64) @ di.T.astype(np.float64)).max(1).sum() for di in d] for qi in q])
    docs = simkern.Ragged.from_list(d)
    for dtype in (np.float32, np.float16, ml_dtypes.bfloat16):
        typed = simkern.Ragged.from_list([x.astype(dtype) for x in d])
        wide = [x.astype(dtype).astype(np.float64) for x in d]
        want = np.array([[(qi.astype(np.float64) @ w.T).max(1).sum() for w in wide] for qi in q])
        for isa, got in per_isa(lambda: simkern.maxsim(q, typed)).items():
            err = np.abs(got - want).max() / np.abs(want).max()
            tol = 2e-2 if dtype is ml_dtypes.bfloat16 else 1e-5
            check(f"maxsim {np.dtype(dtype).name} {isa}", err < tol, f"rel err {err:.1e}")
    top = per_isa(lambda: simkern.maxsim_topk(q, docs, k=3)[1])
    check("maxsim_topk ids equal on every ISA", all(np.array_equal(v, top["scalar"]) for v in top.values()))
    check("maxsim_topk = NumPy's order", np.array_equal(top["scalar"], np.argsort(-ref, axis=1, kind="stable")[:, :3]))


def pq() -> None:
    x = rng.standard_normal((2000, 32)).astype(np.float32)
    pqz = simkern.ProductQuantizer(dim=32, m=8, nbits=8).train(x, seed=0)
    codes = per_isa(lambda: pqz.encode(x))
    check("pq encode identical on every ISA", all(np.array_equal(c, codes["scalar"]) for c in codes.values()))
    adc = per_isa(lambda: pqz.adc(x[:5], codes["scalar"]))
    check("pq adc identical on every ISA", all(np.array_equal(a, adc["scalar"]) for a in adc.values()))
    dec = pqz.decode(codes["scalar"]).astype(np.float64)
    want = ((x[:5, None, :].astype(np.float64) - dec[None]) ** 2).sum(-1)
    check("pq adc = NumPy", np.allclose(adc["scalar"], want, rtol=1e-4, atol=1e-3))
    for nbits in (8, 4):
        index = simkern.PQIndex(32, 8, nbits=nbits).train(x)
        index.add(x)
        ids = per_isa(lambda: index.search(x[:20], 5)[1])
        check(f"PQIndex {nbits}-bit search identical on every ISA",
              all(np.array_equal(v, ids["scalar"]) for v in ids.values()))


def fde() -> None:
    f = simkern.FDE(16, num_repetitions=3, num_simhash_projections=3, projection="ams_sketch", projection_dimension=8,
                    seed=3)
    docs = simkern.Ragged.from_list([rng.standard_normal((n, 16)).astype(np.float32) for n in (1, 4, 9)])
    enc = per_isa(lambda: (f.encode_documents(docs), f.encode_queries(docs)))
    check("fde documents / queries bit-identical on every ISA",
          all(np.array_equal(a[0], enc["scalar"][0]) and np.array_equal(a[1], enc["scalar"][1]) for a in enc.values()))


def hnsw() -> None:
    x = rng.standard_normal((3000, 24)).astype(np.float32)
    q = rng.standard_normal((50, 24)).astype(np.float32)
    exact = np.argsort(((q[:, None] - x[None]) ** 2).sum(-1), axis=1)[:, :10]
    index = simkern.HNSWIndex(24, metric="l2", M=12, ef_construction=80, seed=0)
    index.add(x, threads=1)
    ids = per_isa(lambda: index.search(q, k=10, ef=64)[1])
    check("hnsw search identical on every ISA", all(np.array_equal(v, ids["scalar"]) for v in ids.values()))
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids["scalar"], exact)])
    check("hnsw recall@10 >= 0.9", recall >= 0.9, f"{recall:.3f}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "h.skh")
        index.save(path)
        for mmap in (False, True):
            again = simkern.HNSWIndex.load(path, mmap=mmap)
            check(f"hnsw save / load(mmap={mmap})", np.array_equal(again.search(q, k=10, ef=64)[1], ids["scalar"]))
            del again


def sketch() -> None:
    a = rng.standard_normal((256, 8))
    h = np.array([[1.0]])
    while h.shape[0] < 256:
        h = np.block([[h, h], [h, -h]])
    got = per_isa(lambda: simkern.fwht(a.astype(np.float32)))
    for isa, g in got.items():
        check(f"fwht {isa} = NumPy's Hadamard product", np.allclose(g, h @ a, rtol=1e-4, atol=1e-3))
    m = rng.standard_normal((2000, 20))
    b = m @ rng.standard_normal(20) + 0.01 * rng.standard_normal(2000)
    res = simkern.lstsq_sketched(m, b, seed=0)
    ref = np.linalg.lstsq(m, b, rcond=None)[0]
    err = np.abs(res.x - ref).max() / np.abs(ref).max()
    check("lstsq_sketched = NumPy lstsq", err < 1e-3, f"rel err {err:.1e}")


def multivector_and_shims() -> None:
    docs = [rng.standard_normal((n, 16)).astype(np.float32) for n in rng.integers(1, 12, 300)]
    queries = [docs[i][: max(1, len(docs[i]) // 2)] + 0.01 for i in (0, 7, 99)]
    index = simkern.MultiVectorIndex(16, ann="flat", candidates=300)
    index.add(docs)
    ids = index.search(queries, k=1)[1][:, 0]
    exact = simkern.maxsim_topk(queries, simkern.Ragged.from_list(docs), k=1)[1][:, 0]
    check("MultiVectorIndex top-1 = exact MaxSim top-1 (all candidates)", np.array_equal(ids, exact))
    import simkern.compat.hnswlib as hnswlib

    p = hnswlib.Index(space="l2", dim=8)
    p.init_index(max_elements=200, ef_construction=50, M=8)
    v = rng.standard_normal((200, 8)).astype(np.float32)
    p.add_items(v)
    labels, _ = p.knn_query(v[:10], k=1)
    check("compat.hnswlib Index finds each vector itself", np.array_equal(labels[:, 0], np.arange(10)))


def main() -> None:
    info = simkern._core.build_info()
    print(f"smoke: simkern {simkern.__version__} on {platform.machine()}, Python {platform.python_version()}, "
          f"NumPy {np.__version__}; compiled {info['compiled_isas']}, available {simkern.available_isas()}, "
          f"active {simkern.active_isa()}; {info['compiler']}", flush=True)
    if platform.machine() == "aarch64":
        check("aarch64 wheel has its NEON kernels active", simkern.active_isa() == "neon")
    for family in (maxsim, pq, fde, hnsw, sketch, multivector_and_shims):
        family()
    print("smoke: all checks passed")


if __name__ == "__main__":
    main()
