"""Float64 NumPy oracles. Readable first; they never call simkern."""

from __future__ import annotations

import math

import numpy as np


def maxsim_ref(queries: list[np.ndarray], docs: list[np.ndarray]) -> np.ndarray:
    """score[q, d] = sum_i max_j <q_i, d_j> in float64.

    An empty doc scores -inf against a non-empty query; an empty query scores 0 against any doc.
    """
    out = np.zeros((len(queries), len(docs)), dtype=np.float64)
    for a, q in enumerate(queries):
        q64 = np.asarray(q, dtype=np.float64)
        for b, d in enumerate(docs):
            d64 = np.asarray(d, dtype=np.float64)
            if q64.shape[0] == 0:
                out[a, b] = 0.0
            elif d64.shape[0] == 0:
                out[a, b] = -np.inf
            else:
                out[a, b] = (q64 @ d64.T).max(axis=1).sum()
    return out


def maxsim_magnitude(queries: list[np.ndarray], docs: list[np.ndarray]) -> np.ndarray:
    """sum_i max_j sum_k |q_ik d_jk|: the scale that float32 rounding errors of a MaxSim score are relative to."""
    return maxsim_ref([np.abs(np.asarray(q, np.float64)) for q in queries],
                      [np.abs(np.asarray(d, np.float64)) for d in docs])


def maxsim_tolerance(queries, docs, dim: int, *, query_rounded_to_bf16: bool = False) -> np.ndarray:
    """Absolute tolerance per score.

    A float32 dot of length dim (FMA or not) is within about dim * 2^-24 of sum_k |q_k d_k|; the sum of Lq maxima
    adds Lq * 2^-24 of the total. We allow twice that. With the query rounded to bfloat16 (the AVX512-BF16
    kernel), each product is off by up to 2^-8 relative (|q - bf16(q)| <= 2^-9 |q|, doubled for margin).
    """
    lq = max((len(q) for q in queries), default=0)
    rel = 2.0 * (dim + lq + 4) * 2.0**-24
    if query_rounded_to_bf16:
        rel += 2.0**-8
    mag = maxsim_magnitude(queries, docs)
    return rel * np.where(np.isfinite(mag), mag, 0.0) + 1e-30


def topk_ref(scores: np.ndarray, k: int, allowed: list[np.ndarray] | None = None):
    """Top-k per row: score descending, then id ascending; pad with (-1, -inf). `allowed[q]`: candidate ids."""
    n_queries, n_docs = scores.shape
    out_ids = np.full((n_queries, k), -1, dtype=np.int64)
    out_scores = np.full((n_queries, k), -np.inf, dtype=scores.dtype)
    for q in range(n_queries):
        ids = np.arange(n_docs) if allowed is None else np.asarray(allowed[q], dtype=np.int64)
        ids = ids[ids >= 0]
        order = sorted(ids.tolist(), key=lambda i: (-scores[q, i], i))[:k]
        out_ids[q, : len(order)] = order
        out_scores[q, : len(order)] = scores[q, order]
    return out_scores, out_ids


# -- product quantization ------------------------------------------------------------------------------------------

def pq_subvectors(x: np.ndarray, m: int) -> np.ndarray:
    """(n, dim) -> (n, m, dsub) float64."""
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(x.shape[0], m, x.shape[1] // m)


def pq_tables_ref(queries: np.ndarray, codebooks: np.ndarray, metric: str) -> np.ndarray:
    """(nq, m, ksub): ||q_m - c_mj||^2 or <q_m, c_mj> in float64."""
    cb = np.asarray(codebooks, dtype=np.float64)
    qs = pq_subvectors(queries, cb.shape[0])
    if metric == "l2":
        return ((qs[:, :, None, :] - cb[None]) ** 2).sum(axis=3)
    return (qs[:, :, None, :] * cb[None]).sum(axis=3)


def pq_table_tolerance(queries: np.ndarray, codebooks: np.ndarray, metric: str) -> np.ndarray:
    """float32 summation of dsub terms: (dsub + 2) * 2^-24 relative to the sum of |terms|, doubled."""
    cb = np.asarray(codebooks, dtype=np.float64)
    qs = pq_subvectors(queries, cb.shape[0])
    if metric == "l2":
        mag = ((np.abs(qs[:, :, None, :]) + np.abs(cb[None])) ** 2).sum(axis=3)
    else:
        mag = (np.abs(qs[:, :, None, :]) * np.abs(cb[None])).sum(axis=3)
    return 2.0 * (cb.shape[2] + 2) * 2.0**-24 * mag + 1e-30


def pq_decode_ref(codes_unpacked: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    m = codebooks.shape[0]
    return np.concatenate([codebooks[s][codes_unpacked[:, s]] for s in range(m)], axis=1)


# -- MUVERA FDE --------------------------------------------------------------------------------------------------
# The random draws of Google's reference (libstdc++ std::mt19937 + distributions), written out in Python, and the
# encoding itself with float64 aggregation. SimHash sketches are summed in float32 in coordinate order with fused
# multiply-adds, as simkern does, so that partitions (sign tests) agree.

class MT19937:
    """std::mt19937 (32-bit Mersenne Twister), seeded like std::mt19937(seed)."""

    def __init__(self, seed: int):
        self.state = [seed & 0xFFFFFFFF]
        for i in range(1, 624):
            prev = self.state[-1]
            self.state.append((1812433253 * (prev ^ (prev >> 30)) + i) & 0xFFFFFFFF)
        self.index = 624

    def next(self) -> int:
        if self.index >= 624:
            for i in range(624):
                y = (self.state[i] & 0x80000000) | (self.state[(i + 1) % 624] & 0x7FFFFFFF)
                self.state[i] = self.state[(i + 397) % 624] ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)
            self.index = 0
        y = self.state[self.index]
        self.index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        return y ^ (y >> 18)


def _glibc_logf():
    """glibc's logf (the reference's), or None where it cannot be loaded."""
    try:
        import ctypes
        import ctypes.util

        libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        f = libm.logf
        f.restype, f.argtypes = ctypes.c_float, [ctypes.c_float]
        return f
    except (OSError, AttributeError):
        return None


LOGF = _glibc_logf()
F32 = np.float32


def _canonical_float(gen: MT19937) -> np.float32:
    r = F32(gen.next()) / F32(4294967296.0)
    return np.nextafter(F32(1), F32(0)) if r >= 1 else r


def _canonical_double(gen: MT19937) -> float:
    r = (float(gen.next()) + float(gen.next()) * 4294967296.0) / 18446744073709551616.0
    return np.nextafter(1.0, 0.0) if r >= 1 else r


def _normals(gen: MT19937, count: int) -> list:
    """normal_distribution<float>(0, 1): Marsaglia polar, y * mult returned first, x * mult next."""
    out = []
    while len(out) < count:
        while True:
            x = F32(2) * _canonical_float(gen) - F32(1)
            y = F32(2) * _canonical_float(gen) - F32(1)
            r2 = x * x + y * y
            if not (r2 > 1 or r2 == 0):
                break
        log = F32(LOGF(float(r2))) if LOGF is not None else np.log(r2)
        mult = np.sqrt(F32(-2) * log / r2)
        out += [y * mult, x * mult]
    return out[:count]


def _uniform_below(gen: MT19937, rng: int) -> int:
    """Lemire's method on 32-bit words (libstdc++'s uniform_int_distribution for a 32-bit engine)."""
    product = gen.next() * rng
    low = product & 0xFFFFFFFF
    if low < rng:
        threshold = (-rng % (1 << 32)) % rng
        while low < threshold:
            product = gen.next() * rng
            low = product & 0xFFFFFFFF
    return product >> 32


def _count_sketch(seed: int, count: int, rng: int):
    gen = MT19937(seed)
    index, sign = [], []
    for _ in range(count):
        index.append(_uniform_below(gen, rng))
        sign.append(1.0 if _canonical_double(gen) < 0.5 else -1.0)
    return np.array(index, np.int32), np.array(sign, np.float32)


def fde_matrices_ref(cfg: dict) -> dict:
    """The random matrices of an FDE configuration (keys as FDE's config; seed taken modulo 2**32)."""
    d, reps, k = cfg["dim"], cfg["num_repetitions"], cfg["num_simhash_projections"]
    seed = cfg["seed"] % 2**32
    simhash = np.zeros((d, reps * k), np.float32)
    for r in range(reps):
        if k:
            g = np.array(_normals(MT19937((seed + r) % 2**32), d * k), np.float32).reshape(k, d).T  # column-major
            simhash[:, r * k:(r + 1) * k] = g
    out = {"simhash": simhash}
    if cfg["projection"] == "ams_sketch":
        pairs = [_count_sketch((seed + r) % 2**32, d, cfg["projection_dimension"]) for r in range(reps)]
        out["ams_index"] = np.stack([p[0] for p in pairs])
        out["ams_sign"] = np.stack([p[1] for p in pairs])
    else:
        out["ams_index"] = np.zeros((0, d), np.int32)
        out["ams_sign"] = np.zeros((0, d), np.float32)
    if cfg["final_projection_dimension"]:
        dp = cfg["projection_dimension"] or d
        out["final_index"], out["final_sign"] = _count_sketch(seed, reps * 2**k * dp, cfg["final_projection_dimension"])
    else:
        out["final_index"], out["final_sign"] = np.zeros(0, np.int32), np.zeros(0, np.float32)
    return out


def _gray_decode(p: int) -> int:
    """The prefix XOR of p's bits from the top (muvera-python's gray_code_to_binary)."""
    mask = p >> 1
    while mask:
        p ^= mask
        mask >>= 1
    return p


def fde_ref(points: np.ndarray, cfg: dict, mats: dict, document: bool):
    """One point cloud's FDE, float64 aggregation; returns (values, magnitudes) where magnitudes bound the float32
    rounding (sums of absolute values that went into each output). ``cfg`` as FDE.config; an empty partition p is
    filled from the sign string p ^ (p >> 1), or its Gray decoding with ``cfg["fill_target"] == "gray_decoded"``
    (FDE.from_matrices' option, muvera-python's rule)."""
    x = np.asarray(points, np.float32)
    n, d = x.shape
    reps, k = cfg["num_repetitions"], cfg["num_simhash_projections"]
    ams = cfg["projection"] == "ams_sketch"
    dp = cfg["projection_dimension"] if ams else d
    parts = 2**k
    # float32 sketches, coordinates in order, one fused multiply-add per term as in the kernels: the product of two
    # float32 values is exact in float64, so float32(product + acc) is the fma except in double-rounding ties
    # (about 2**-29 of the steps), which could change a partition only for a sketch within an ulp of zero.
    sk = np.zeros((n, reps * k), np.float32)
    g64 = mats["simhash"].astype(np.float64)
    x64 = x.astype(np.float64)
    for i in range(d):
        sk = (sk.astype(np.float64) + x64[:, i:i + 1] * g64[i][None, :]).astype(np.float32)
    out = np.zeros((reps, parts, dp))
    mag = np.zeros((reps, parts, dp))
    for r in range(reps):
        if ams:
            y = np.zeros((n, dp))
            ym = np.zeros((n, dp))
            for i in range(d):
                y[:, mats["ams_index"][r, i]] += mats["ams_sign"][r, i] * x64[:, i]
                ym[:, mats["ams_index"][r, i]] += np.abs(x64[:, i])
        else:
            y, ym = x64, np.abs(x64)
        bits = sk[:, r * k:(r + 1) * k] > 0
        part = np.zeros(n, np.int64)
        signs = np.zeros(n, np.int64)
        for j in range(k):
            part = (part << 1) + (bits[:, j] ^ (part & 1))
            signs = (signs << 1) | bits[:, j]
        counts = np.zeros(parts)
        for t in range(n):
            out[r, part[t]] += y[t]
            mag[r, part[t]] += ym[t]
            counts[part[t]] += 1
        if document:
            for p in range(parts):
                if counts[p]:
                    out[r, p] /= counts[p]
                    mag[r, p] /= counts[p]
                elif k and cfg["fill_empty_partitions"] and n:
                    target = _gray_decode(p) if cfg.get("fill_target") == "gray_decoded" else p ^ (p >> 1)
                    dist = [bin(int(s) ^ target).count("1") for s in signs]
                    best = int(np.argmin(dist))  # first minimum: lowest token index
                    out[r, p] = y[best]
                    mag[r, p] = ym[best]
    out, mag = out.reshape(-1), mag.reshape(-1)
    if cfg["final_projection_dimension"]:
        fo = np.zeros(cfg["final_projection_dimension"])
        fm = np.zeros(cfg["final_projection_dimension"])
        np.add.at(fo, mats["final_index"], mats["final_sign"] * out)
        np.add.at(fm, mats["final_index"], mag)
        return fo, fm
    return out, mag


def fwht_reference(x: np.ndarray) -> np.ndarray:
    """Walsh-Hadamard transform along axis 0 in float64, the textbook butterflies: for h = 1, 2, 4, ...: each
    pair of rows (i, i + h) with i mod 2h < h becomes (x_i + x_{i+h}, x_i - x_{i+h}). Equals hadamard(n) @ x."""
    y = np.array(x, dtype=np.float64, copy=True)
    n = y.shape[0]
    h = 1
    while h < n:
        for base in range(0, n, 2 * h):
            a = y[base:base + h].copy()
            b = y[base + h:base + 2 * h].copy()
            y[base:base + h] = a + b
            y[base + h:base + 2 * h] = a - b
        h *= 2
    return y


# --- sketches: the random entries of S, rebuilt from the documented counter hashes (simkern/sketch.hpp) ---
_M64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _stream_key(seed: int, stream: int) -> int:
    return _mix64(seed ^ _mix64((stream * 0xD1B54A32D192ED03) & _M64))


def _hash_at(key: int, counter: int) -> int:
    return _mix64((key + counter * 0x9E3779B97F4A7C15) & _M64)


def hadamard_entry_signs(rows: np.ndarray, n: int) -> np.ndarray:
    """H_N[rows, :n] of the Sylvester Hadamard matrix: (-1)^popcount(i & j)."""
    i = np.asarray(rows, dtype=np.int64)[:, None]
    j = np.arange(n, dtype=np.int64)[None, :]
    bits = i & j
    parity = np.zeros(bits.shape, dtype=np.int64)
    while bits.any():
        parity ^= bits & 1
        bits >>= 1
    return 1.0 - 2.0 * parity


def sketch_matrix_reference(n: int, m: int, kind: str, seed: int, nnz: int, srht_rows=None, srht_signs=None):
    """S (m x n, float64) of simkern.sketch. srht takes its sampled rows and signs from the caller (the library's
    _srht_rows / _srht_signs; their distribution is tested separately); the other kinds are rebuilt here from the
    counter hashes: countsketch/sparse_sign put +-1 (scaled by 1/sqrt(nnz)) at row t*m//s + floor(h * size / 2^64) of
    block t with sign bit h & 1; gaussian is Box-Muller over (row, pair) hashes."""
    if kind == "srht":
        return hadamard_entry_signs(srht_rows, n) * np.asarray(srht_signs, dtype=np.float64)[None, :] / np.sqrt(m)
    s = np.zeros((m, n))
    if kind in ("countsketch", "sparse_sign"):
        nnz = 1 if kind == "countsketch" else nnz
        key = _stream_key(seed, 4)
        for r in range(n):
            for t in range(nnz):
                h = _hash_at(key, r * nnz + t)
                lo, hi = t * m // nnz, (t + 1) * m // nnz
                s[lo + ((h * (hi - lo)) >> 64), r] += -1.0 if h & 1 else 1.0
        return s / np.sqrt(nnz)
    key = _stream_key(seed, 3)
    for i in range(m):
        for j in range(0, n, 2):
            h1, h2 = _hash_at(key, (i << 33) + j), _hash_at(key, (i << 33) + j + 1)
            u1 = ((h1 >> 11) + 1) * 2.0**-53
            u2 = (h2 >> 11) * 2.0**-53
            radius, angle = math.sqrt(-2.0 * math.log(u1)), 6.283185307179586 * u2
            s[i, j] = radius * math.cos(angle)
            if j + 1 < n:
                s[i, j + 1] = radius * math.sin(angle)
    return s / np.sqrt(m)


def linf_error_ratio(a: np.ndarray, b: np.ndarray, x: np.ndarray) -> float:
    """||x - x*||_inf / (||a x* - b|| ||pinv(a)|| / sqrt(d)): the eps a solution achieves in the l_inf guarantee."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    x_star = np.linalg.lstsq(a64, b64, rcond=None)[0]
    scale = np.linalg.norm(a64 @ x_star - b64) / np.linalg.svd(a64, compute_uv=False)[-1] / np.sqrt(a.shape[1])
    return float(np.abs(np.asarray(x, np.float64) - x_star).max() / scale)


def lstsq_design(name: str, n: int, d: int, seed: int):
    """(a, b) of the three least-squares designs of ../shared/notes/linf.md: "gauss" (kappa ~ 1), "cauchy-rows" (rows
    scaled by |Cauchy|: leverage near 1, kappa ~ 60) and "spike" (d rows e_j of leverage ~1 over a 1e-3 background,
    plus 8 residual outliers of +-1)."""
    rng = np.random.default_rng(seed)
    if name == "gauss":
        a = rng.standard_normal((n, d))
    elif name == "cauchy-rows":
        a = rng.standard_normal((n, d)) * np.abs(rng.standard_cauchy(n))[:, None]
    else:
        a = 1e-3 * rng.standard_normal((n, d))
        a[:d] += np.eye(d)
    b = a @ rng.standard_normal(d) + (1e-3 if name == "spike" else 1.0) * rng.standard_normal(n)
    if name == "spike":
        rows = rng.choice(np.arange(d, n), 8, replace=False)
        b[rows] += rng.choice([-1.0, 1.0], 8)
    return a, b
