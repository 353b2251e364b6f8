"""Build the fuzzers' seed corpora from real saved files: python tools/fuzz/make_seeds.py OUT_DIR

Small indexes are built with the installed (or staged) simkern and saved; nothing binary is committed. Writes

    OUT_DIR/<target>/corpus/seed-*    one libFuzzer input per file (the target's input format, see targets.py)
    OUT_DIR/<target>/base/...         what a target mutates from (saved MultiVectorIndex folders, pickled states)

for every target in targets.TARGETS. Deterministic (fixed seeds) and quick (a few seconds).
"""

from __future__ import annotations

import os
import pickle
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import simkern  # noqa: E402
from targets import EDIT, FIX, MMAP, MV_FILES, MV_V1, hnsw_as_version  # noqa: E402


def _write(folder: str, name: str, data: bytes) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def _saved_bytes(obj) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.bin")
        obj.save(path)
        with open(path, "rb") as f:
            return f.read()


def _vectors(rng, n: int, dim: int) -> np.ndarray:
    return rng.standard_normal((n, dim)).astype(np.float32)


def hnsw_indexes(rng) -> dict[str, simkern.HNSWIndex]:
    """Small graphs covering every metric, both storages, tombstones, several levels and the empty index."""
    out = {}
    a = simkern.HNSWIndex(4, metric="l2", M=4, ef_construction=16, seed=1)
    a.add(_vectors(rng, 48, 4), threads=1)
    out["l2-f32"] = a
    b = simkern.HNSWIndex(3, metric="cosine", M=2, ef_construction=8, storage="float16", seed=7)
    b.add(_vectors(rng, 30, 3), np.arange(100, 130), threads=1)
    b.remove([101, 117])
    out["cos-f16-tomb"] = b
    c = simkern.HNSWIndex(2, metric="ip", M=3, ef_construction=4, seed=3)
    c.add(_vectors(rng, 12, 2), threads=1)
    out["ip-f32"] = c
    out["empty"] = simkern.HNSWIndex(5, metric="l2", M=2)
    return out


def pq_objects(rng) -> dict[str, object]:
    """Trained and untrained quantizers and indexes: 8 and 4 bits (odd m), OPQ, stored vectors."""
    x = _vectors(rng, 300, 8)
    out = {}
    out["pq8"] = simkern.ProductQuantizer(8, 4).train(x, iters=2)
    out["pq4-odd"] = simkern.ProductQuantizer(6, 3, nbits=4, metric="ip").train(x[:, :6].copy(), iters=2)
    out["pq-untrained"] = simkern.ProductQuantizer(4, 2)
    out["opq"] = simkern.OPQ(8, 2, nbits=4, iters=1, pq_iters=1).train(x, pq_final_iters=1)
    i8 = simkern.PQIndex(8, 2, keep_vectors=True).train(x, iters=2)
    i8.add(x[:20])
    out["pqindex8-vec"] = i8
    i4 = simkern.PQIndex(6, 3, nbits=4, metric="ip").train(x[:, :6].copy(), iters=2)
    i4.add(x[:9, :6].copy())
    out["pqindex4-odd"] = i4
    io = simkern.PQIndex(4, 2, nbits=4, opq=True, keep_vectors=True)
    io.train(x[:, :4].copy(), iters=1)
    io.add(x[:5, :4].copy())
    out["pqindex-opq"] = io
    out["pqindex-empty"] = simkern.PQIndex(4, 1, nbits=4).train(x[:, :4].copy(), iters=1)
    return out


def ivfpq_indexes(rng) -> dict[str, simkern.IVFPQIndex]:
    """Small trained IVF-PQ indexes: cells with full blocks and tails, removals, vectors, OPQ, raw IP codes."""
    x = _vectors(rng, 400, 8)
    out = {}
    i8 = simkern.IVFPQIndex(8, 3, 2, keep_vectors=True, opq=True).train(x, iters=2)
    i8.add(x[:150])
    out["ivf8-vec-opq"] = i8
    i4 = simkern.IVFPQIndex(6, 4, 3, nbits=4).train(x[:, :6].copy(), iters=2)
    i4.add(x[:90, :6].copy(), ids=np.arange(1000, 1090))
    i4.remove(np.arange(1000, 1090, 7))
    out["ivf4-odd-removed"] = i4
    ip = simkern.IVFPQIndex(4, 2, 2, nbits=4, metric="ip", by_residual=False).train(x[:, :4].copy(), iters=1)
    ip.add(x[:40, :4].copy())
    out["ivf4-ip-raw"] = ip
    out["ivf-empty"] = simkern.IVFPQIndex(4, 2, 1, nbits=4).train(x[:, :4].copy(), iters=1)
    return out


def multivector_indexes(rng) -> dict[str, simkern.MultiVectorIndex]:
    small_fde = dict(num_repetitions=2, num_simhash_projections=1, projection_dimension=2)
    docs = [_vectors(rng, int(n), 4) for n in rng.integers(1, 4, 20)]
    out = {}
    h = simkern.MultiVectorIndex(4, fde=simkern.FDE(4, **small_fde), ann="hnsw", M=2, ef_construction=8,
                                 storage="float16")
    h.add(docs[:12])
    h.remove([3])
    out["hnsw"] = h
    f = simkern.MultiVectorIndex(4, fde=simkern.FDE(4, **small_fde), ann="flat", candidates=3)
    f.add(docs[:6])
    out["flat"] = f
    t = simkern.MultiVectorIndex(4, ann="tokens", storage="bfloat16", M=2, ef_construction=4, token_k=3)
    t.add(docs[:5])
    out["tokens"] = t
    p = simkern.MultiVectorIndex(4, fde=simkern.FDE(4, **small_fde), ann="pq", m=2, nbits=4, iters=1)
    p.add(docs[:16])
    out["pq"] = p
    return out


def main(out_dir: str) -> None:
    rng = np.random.default_rng(0)
    # hnsw_file: control byte (FIX: repair the checksums after mutation; MMAP: load with mmap=True) + file bytes;
    # EDIT: the rest are edits (see targets.edit_hnsw) of one of the files under base/
    for b, (name, index) in enumerate(hnsw_indexes(rng).items()):
        data = _saved_bytes(index)
        for target in ("hnsw_file", "hnsw_pickle"):
            _write(os.path.join(out_dir, target, "base"), f"{b}-{name}.skh", data)
        for control in (0, FIX, MMAP | FIX):
            _write(os.path.join(out_dir, "hnsw_file", "corpus"), f"seed-{name}-{control}", bytes([control]) + data)
        for version in (1, 2):  # the formats before the container, still read
            _write(os.path.join(out_dir, "hnsw_file", "corpus"), f"seed-{name}-v{version}",
                   bytes([FIX]) + hnsw_as_version(data, version))
        for control in (EDIT, EDIT | MMAP):
            _write(os.path.join(out_dir, "hnsw_file", "corpus"), f"seed-{name}-{control}",
                   bytes([control, b]) + rng.integers(0, 256, 24, dtype=np.uint8).tobytes())
        # hnsw_pickle: the same payload as the pickled state {"data": ...}
        for control in (0, FIX):
            _write(os.path.join(out_dir, "hnsw_pickle", "corpus"), f"seed-{name}-{control}",
                   bytes([control]) + index.__getstate__()["data"])
        _write(os.path.join(out_dir, "hnsw_pickle", "corpus"), f"seed-{name}-{EDIT}",
               bytes([EDIT, b]) + rng.integers(0, 256, 24, dtype=np.uint8).tobytes())
    # pq_index_file: control byte + file bytes
    objects = pq_objects(rng)
    for name, obj in objects.items():
        if isinstance(obj, simkern.PQIndex):
            for control in (0, FIX):
                _write(os.path.join(out_dir, "pq_index_file", "corpus"), f"seed-{name}-{control}",
                       bytes([control]) + _saved_bytes(obj))
    # ivfpq_file: control byte + file bytes (8-bit with vectors and OPQ, 4-bit odd m with removals, IP raw, empty)
    for name, obj in ivfpq_indexes(rng).items():
        for control in (0, FIX, MMAP | FIX):
            _write(os.path.join(out_dir, "ivfpq_file", "corpus"), f"seed-{name}-{control}",
                   bytes([control]) + _saved_bytes(obj))
    # pq_pickle: base states (pickled by us, trusted) + corpus of FuzzedDataProvider inputs
    base = os.path.join(out_dir, "pq_pickle", "base")
    os.makedirs(base, exist_ok=True)
    for i, (name, obj) in enumerate(objects.items()):
        with open(os.path.join(base, f"{i:02d}-{name}.pkl"), "wb") as f:
            pickle.dump((type(obj).__name__, obj.__getstate__()), f)
    for i in range(len(objects)):
        # byte 0 picks the base state; an all-zero tail applies no mutation (the unmodified round trip)
        _write(os.path.join(out_dir, "pq_pickle", "corpus"), f"seed-{i:02d}", bytes([i]) + bytes(16))
        _write(os.path.join(out_dir, "pq_pickle", "corpus"), f"seed-{i:02d}-r",
               bytes([i]) + rng.integers(0, 256, 64, dtype=np.uint8).tobytes())
    # multivector_dir: saved folders (index.skc) and the version 1 folder of tests/data; corpus entries = control
    # byte (see targets.multivector_dir) + the bytes of the file it replaces
    mv_base = os.path.join(out_dir, "multivector_dir", "base")
    os.makedirs(mv_base, exist_ok=True)
    corpus = os.path.join(out_dir, "multivector_dir", "corpus")
    for b, (name, index) in enumerate(multivector_indexes(rng).items()):
        folder = os.path.join(mv_base, f"{b}-{name}")
        index.save(folder)
        with open(os.path.join(folder, "index.skc"), "rb") as f:
            data = f.read()
        skc = MV_FILES.index("index.skc") << 2
        for control in (b | skc, b | skc | 0x80, b | skc | 0x80 | 0x40):
            _write(corpus, f"seed-{name}-index.skc-{control}", bytes([control]) + data)
    shutil.copytree(MV_V1, os.path.join(mv_base, "v1"))
    for f_i, fname in enumerate(MV_FILES):
        full = os.path.join(MV_V1, fname)
        if fname == "index.skc" or not os.path.isfile(full):
            continue
        with open(full, "rb") as f:
            data = f.read()
        control = (f_i << 2) | (0x80 if fname != "manifest.json" else 0)  # 0x80: re-hash the manifest
        _write(corpus, f"seed-v1-{fname}", bytes([control]) + data)
    # ragged: FuzzedDataProvider inputs; a few fixed blobs to start from
    for i in range(8):
        _write(os.path.join(out_dir, "ragged", "corpus"), f"seed-{i}",
               rng.integers(0, 256, 16 + 24 * i, dtype=np.uint8).tobytes())
    # hnswlib_file: control byte (bit 0: BFIndex; bits 1-2: the space) + a file in hnswlib's format, written by the
    # shim (the same bytes real hnswlib writes for that graph): small indexes, with a marked-deleted element
    from simkern.compat import hnswlib as shim
    corpus = os.path.join(out_dir, "hnswlib_file", "corpus")
    work = tempfile.mkdtemp()
    try:
        for i, (n, dim, m) in enumerate(((40, 4, 4), (120, 9, 6), (0, 3, 2))):
            x = _vectors(rng, max(n, 1), dim)
            index = shim.Index("l2", dim)
            index.init_index(n + 5, M=m, ef_construction=20)
            bf = shim.BFIndex("l2", dim)
            bf.init_index(n + 5)
            if n:
                index.add_items(x[:n])
                index.mark_deleted(1)
                bf.add_items(x[:n])
            for kind, obj, control in (("index", index, 0), ("bf", bf, 1)):
                path = os.path.join(work, f"{kind}-{i}")
                obj.save_index(path)
                with open(path, "rb") as f:
                    data = f.read()
                for space in range(3):
                    _write(corpus, f"seed-{kind}-{i}-{space}", bytes([control | space << 1]) + data)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"make_seeds: corpora written under {out_dir}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
