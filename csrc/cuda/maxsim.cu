// MaxSim on the GPU: score(q, d) = sum_i max_j <q_i, d_j> over token sets, never materialising the Lq x Ld
// similarities.
//
// Tensor-core kernel (float16 / bfloat16 docs, sm_80+, dim <= 256): one block of WARPS warps takes BM = 16 * WARPS
// query-token rows (whole queries when a query has <= 64 rows, else one 64-row chunk of one query) against one doc.
// The doc's tokens stream through shared memory in tiles of BN = 64 rows (cp.async, double-buffered, rows padded by
// 8 elements so that the fragment loads hit 32 distinct banks); each warp multiplies its 16 rows with
// mma.sync.m16n8k16 (float32 accumulation) over the whole dim, masks invalid doc tokens with -inf and keeps the
// running max of each row in registers. One reduction per (query, doc) at the end, in row order (deterministic).
// Queries in another dtype than the docs (float32 queries, for one) are split into hi + lo parts in the docs'
// dtype and multiplied twice: ~16 significant bits of the query instead of 8 (bfloat16) or 11 (float16).
//
// SIMT kernel (float32 docs, sm_75, dim > 256, or forced): one block per (query, doc), float32 fma dot products.
//
// Layouts: queries are first packed (pack_queries) into (n_queries, lq_pad, dp) rows of the kernel's type, masked
// tokens removed (MaskMode::kRemove) or scaled by their mask value (kMultiply), zero rows and columns as padding;
// docs are read where they lie (ragged rows + offsets, or padded (n, L, dim) + mask).
#include <cfloat>

#include "common.cuh"
#include "topk.cuh"

namespace simkern {
namespace cuda {
namespace {

constexpr float kNegInf = -INFINITY;

// --- input normalisation ----------------------------------------------------------------------------------------

__global__ void to_i64_kernel(const void* src, int dtype, i64 count, i64* dst) {
  const i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x;
  if (i < count) dst[i] = dtype == kI32 ? static_cast<const std::int32_t*>(src)[i] : static_cast<const i64*>(src)[i];
}

// mask (n, L) of any dtype and strides -> float32 (n, L) contiguous weights.
__global__ void mask_to_f32_kernel(DeviceArray mask, i64 n, i64 len, float* dst) {
  const i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x;
  if (i >= n * len) return;
  const i64 r = i / len, t = i % len;
  dst[i] = load_as_f32(mask.data, r * mask.strides[0] + t * mask.strides[1], mask.dtype);
}

// One set of a SetBatch on the device: its first token's element offset, its token count and mask weights.
struct SetsDev {
  const void* tokens;
  int dtype;
  i64 row_stride, set_stride;  // elements
  const i64* offsets;          // ragged, else nullptr
  i64 fixed_len;               // padded
  const float* weights;        // padded with a mask, else nullptr
  i64 n_sets;
  __device__ __forceinline__ void locate(i64 s, i64& first, i64& len) const {
    if (offsets) {
      first = offsets[s] * row_stride;
      len = offsets[s + 1] - offsets[s];
    } else {
      first = s * set_stride;
      len = fixed_len;
    }
  }
};

// Packs query set i into rows i * lq_pad .. of hi (and lo when split): kept tokens in order, each token's value
// (times its mask weight in kMultiply mode), zero rows after the count and zero columns dim .. dp - 1.
// count[i] = the rows that take part. Flags non-finite values of kept tokens.
template <class T>
__global__ void pack_queries_kernel(SetsDev q, i64 dim, int dp, int lq_pad, bool multiply, T* hi, T* lo, int* count,
                                    int* flags) {
  constexpr int kChunk = 256;  // = blockDim.x
  __shared__ int rank[kChunk];
  __shared__ float weight[kChunk];
  __shared__ int warp_total[kChunk / 32];
  __shared__ int carry;
  const i64 s = blockIdx.x;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  i64 first, len;
  q.locate(s, first, len);
  if (tid == 0) carry = 0;
  bool bad = false;
  __syncthreads();
  for (i64 c0 = 0; c0 < len; c0 += kChunk) {
    const i64 t = c0 + tid;
    float w = 0.0f;
    if (t < len) w = q.weights ? q.weights[s * q.fixed_len + t] : 1.0f;
    const bool keep = t < len && (multiply || w != 0.0f);
    const unsigned ballot = __ballot_sync(0xffffffffu, keep);
    if (lane == 0) warp_total[warp] = __popc(ballot);
    __syncthreads();
    int before = carry;
    for (int w2 = 0; w2 < warp; ++w2) before += warp_total[w2];
    rank[tid] = keep ? before + __popc(ballot & ((1u << lane) - 1u)) : -1;
    weight[tid] = w;
    __syncthreads();
    if (tid == 0) {
      int total = 0;
      for (int w2 = 0; w2 < kChunk / 32; ++w2) total += warp_total[w2];
      carry += total;
    }
    const i64 rows = len - c0 < kChunk ? len - c0 : kChunk;
    for (i64 e = tid; e < rows * dim; e += kChunk) {
      const int r = static_cast<int>(e / dim);
      const i64 c = e % dim;
      if (rank[r] < 0) continue;
      const float wr = weight[r];
      float v = 0.0f;
      if (wr != 0.0f) {  // a 0-weight token (kMultiply) scores 0 exactly, whatever its values
        v = load_as_f32(q.tokens, first + (c0 + r) * q.row_stride + c, q.dtype);
        bad |= !isfinite(v);
        if (multiply && wr != 1.0f) v *= wr;
      }
      const i64 at = (s * lq_pad + rank[r]) * static_cast<i64>(dp) + c;
      const T h = from_f32<T>(v);
      hi[at] = h;
      if (lo) lo[at] = from_f32<T>(v - to_f32<T>(h));
    }
    __syncthreads();
  }
  const int kept = carry;
  // Zero padding: columns dim .. dp - 1 of kept rows, and every column of rows kept .. lq_pad - 1.
  for (i64 e = tid; e < static_cast<i64>(lq_pad) * dp; e += kChunk) {
    const int r = static_cast<int>(e / dp), c = static_cast<int>(e % dp);
    if (r < kept && c < dim) continue;
    const i64 at = (s * lq_pad + r) * static_cast<i64>(dp) + c;
    hi[at] = from_f32<T>(0.0f);
    if (lo) lo[at] = from_f32<T>(0.0f);
  }
  if (tid == 0) count[s] = kept;
  if (__syncthreads_or(bad) && tid == 0) atomicOr(flags, kFlagNonFinite);
}

// Zero rows past the last query (the last row block reads them).
template <class T>
__global__ void zero_kernel(T* p, i64 count) {
  const i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x;
  if (i < count) p[i] = from_f32<T>(0.0f);
}

// --- the sum over a query's rows ------------------------------------------------------------------------------

// Sums row maxima in row order; a non-finite sum that no -inf row explains (an empty doc) is a float32 overflow.
__device__ __forceinline__ float sum_rows(const float* rowmax, int rows, bool& bad) {
  float s = 0.0f;
  bool neg_inf = false;
  for (int r = 0; r < rows; ++r) {
    s += rowmax[r];
    neg_inf |= rowmax[r] == kNegInf;
  }
  if (!isfinite(s) && !(neg_inf && s == kNegInf)) bad = true;
  return s;
}

struct Output {
  float* scores;   // (n_queries, ncols)
  float* partial;  // (chunks, n_queries, ncols) when a query spans several row blocks
  i64 ncols;
  const i64* cand;  // (n_queries, ncols) doc ids, or nullptr (dense: column = doc)
  int* flags;
};

// --- tensor-core kernel -----------------------------------------------------------------------------------------

template <class T>
struct MmaType;
template <>
struct MmaType<__half> {
  static constexpr bool kBf16 = false;
};
template <>
struct MmaType<__nv_bfloat16> {
  static constexpr bool kBf16 = true;
};

__device__ __forceinline__ void mma_16816(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                          std::uint32_t b1, bool bf16) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if (bf16)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#elif defined(SIMKERN_CUDA_EMU)
  ::emu::mma_m16n8k16(c, a, b0, b1, bf16);
#else
  (void)c, (void)a, (void)b0, (void)b1, (void)bf16;
  __trap();  // the host never launches this kernel below sm_80
#endif
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(addr), "l"(gmem));
#else
  *static_cast<uint4*>(smem) = *static_cast<const uint4*>(gmem);
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

constexpr int kBN = 64;     // doc tokens per shared-memory tile
constexpr int kRowPad = 8;  // elements of padding per shared row (bank-conflict-free fragment loads)

struct MmaParams {
  const void* qhi;
  const void* qlo;  // nullptr: not split
  const int* qcount;
  i64 n_queries;
  int lq_pad, dp, chunks;  // chunks: row blocks per query (lq_pad > BM), else 1
  i64 n_row_blocks;        // dense: ceil(n_queries * lq_pad / BM)
  SetsDev docs;
  i64 dim;
  bool multiply, vec16;
  Output out;
  i64 block_base;  // the logical index of this launch's first block (launches split at the grid limit)
};

inline std::size_t mma_smem_bytes(int warps, int dp, bool split) {
  const std::size_t row = static_cast<std::size_t>(dp + kRowPad) * 2;
  return (split ? 2 : 1) * 16 * warps * row + 2 * kBN * row + 2 * kBN * (sizeof(float) + sizeof(int)) +
         16 * warps * sizeof(float);
}

template <class T, int WARPS>
__global__ void __launch_bounds__(WARPS * 32) maxsim_mma_kernel(MmaParams p) {
  constexpr int BM = 16 * WARPS;
  SIMKERN_DYNAMIC_SMEM(smem_raw);
  const int dps = p.dp + kRowPad;
  const bool split = p.qlo != nullptr;
  T* qs_hi = reinterpret_cast<T*>(smem_raw);
  T* qs_lo = qs_hi + BM * dps;
  T* ds = qs_hi + (split ? 2 : 1) * BM * dps;                      // [2][kBN][dps]
  float* colscale = reinterpret_cast<float*>(ds + 2 * kBN * dps);  // [2][kBN]
  int* colvalid = reinterpret_cast<int*>(colscale + 2 * kBN);      // [2][kBN]
  float* rowmax = reinterpret_cast<float*>(colvalid + 2 * kBN);    // [BM]

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, tig = lane & 3;
  // Which rows and which doc.
  i64 row0, doc, col;
  int chunk = 0;
  const i64 block = p.block_base + blockIdx.x;
  if (p.out.cand) {
    const i64 b = block;
    chunk = static_cast<int>(b % p.chunks);
    const i64 pair = b / p.chunks;  // q * ncols + j
    const i64 q = pair / p.out.ncols;
    col = pair % p.out.ncols;
    row0 = q * p.lq_pad + static_cast<i64>(chunk) * BM;
    doc = p.out.cand[pair];
  } else {
    doc = block / p.n_row_blocks;
    row0 = (block % p.n_row_blocks) * BM;
    col = doc;
    if (p.chunks > 1) chunk = static_cast<int>((row0 % p.lq_pad) / BM);
  }
  i64 first = 0, len = 0;
  if (doc >= 0) p.docs.locate(doc, first, len);
  const T* dtok = static_cast<const T*>(p.docs.tokens) + first;

  // Query rows -> shared (packed rows are dp wide, 16-byte aligned).
  {
    const int vecs_per_row = p.dp * 2 / 16;
    const uint4* src_hi = reinterpret_cast<const uint4*>(static_cast<const T*>(p.qhi) + row0 * p.dp);
    for (int e = tid; e < BM * vecs_per_row; e += WARPS * 32) {
      const int r = e / vecs_per_row, v = e % vecs_per_row;
      *reinterpret_cast<uint4*>(qs_hi + r * dps + v * 8) = src_hi[r * vecs_per_row + v];
    }
    if (split) {
      const uint4* src_lo = reinterpret_cast<const uint4*>(static_cast<const T*>(p.qlo) + row0 * p.dp);
      for (int e = tid; e < BM * vecs_per_row; e += WARPS * 32) {
        const int r = e / vecs_per_row, v = e % vecs_per_row;
        *reinterpret_cast<uint4*>(qs_lo + r * dps + v * 8) = src_lo[r * vecs_per_row + v];
      }
    }
  }

  // Doc tile j -> stage: rows beyond the doc and columns beyond dim are zeros; colvalid / colscale per token.
  const auto load_tile = [&](i64 j, int stage) {
    T* dst = ds + stage * kBN * dps;
    const i64 t0 = j * kBN;
    if (p.vec16) {
      const int vecs = static_cast<int>(p.dim / 8);  // dim % 8 == 0 here
      for (int e = tid; e < kBN * (p.dp / 8); e += WARPS * 32) {
        const int r = e / (p.dp / 8), v = e % (p.dp / 8);
        T* d = dst + r * dps + v * 8;
        if (t0 + r < len && v < vecs) cp_async16(d, dtok + (t0 + r) * p.docs.row_stride + v * 8);
        else *reinterpret_cast<uint4*>(d) = make_uint4(0, 0, 0, 0);
      }
    } else {
      for (int e = tid; e < kBN * p.dp; e += WARPS * 32) {
        const int r = e / p.dp, c = e % p.dp;
        dst[r * dps + c] = (t0 + r < len && c < p.dim) ? dtok[(t0 + r) * p.docs.row_stride + c] : from_f32<T>(0.0f);
      }
    }
    for (int r = tid; r < kBN; r += WARPS * 32) {
      const i64 t = t0 + r;
      float w = 1.0f;
      if (t < len && p.docs.weights) w = p.docs.weights[doc * p.docs.fixed_len + t];
      colvalid[stage * kBN + r] = t < len && (p.multiply || w != 0.0f);
      colscale[stage * kBN + r] = p.multiply ? w : 1.0f;
    }
  };

  // This thread's two rows (g and g + 8 of its warp's 16): do they take part?
  bool row_ok[2];
  for (int h = 0; h < 2; ++h) {
    const i64 row = row0 + warp * 16 + g + 8 * h;
    const i64 q = row / p.lq_pad;
    row_ok[h] = q < p.n_queries && (row % p.lq_pad) < p.qcount[q];
  }

  float m[2] = {kNegInf, kNegInf};
  bool bad = false;
  const i64 n_tiles = (len + kBN - 1) / kBN;
  const bool bf16 = MmaType<T>::kBf16;
  if (n_tiles > 0) {
    load_tile(0, 0);
    cp_async_commit();
  }
  for (i64 j = 0; j < n_tiles; ++j) {
    const int stage = static_cast<int>(j & 1);
    if (j + 1 < n_tiles) {
      load_tile(j + 1, stage ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const T* dt = ds + stage * kBN * dps;
    float acc[kBN / 8][4];
#pragma unroll
    for (int nt = 0; nt < kBN / 8; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
    const T* qa = qs_hi + (warp * 16) * dps;
    const T* qb = qs_lo + (warp * 16) * dps;
    for (int kk = 0; kk < p.dp; kk += 16) {
      std::uint32_t a[4], al[4];
      a[0] = *reinterpret_cast<const std::uint32_t*>(qa + g * dps + kk + 2 * tig);
      a[1] = *reinterpret_cast<const std::uint32_t*>(qa + (g + 8) * dps + kk + 2 * tig);
      a[2] = *reinterpret_cast<const std::uint32_t*>(qa + g * dps + kk + 8 + 2 * tig);
      a[3] = *reinterpret_cast<const std::uint32_t*>(qa + (g + 8) * dps + kk + 8 + 2 * tig);
      if (split) {
        al[0] = *reinterpret_cast<const std::uint32_t*>(qb + g * dps + kk + 2 * tig);
        al[1] = *reinterpret_cast<const std::uint32_t*>(qb + (g + 8) * dps + kk + 2 * tig);
        al[2] = *reinterpret_cast<const std::uint32_t*>(qb + g * dps + kk + 8 + 2 * tig);
        al[3] = *reinterpret_cast<const std::uint32_t*>(qb + (g + 8) * dps + kk + 8 + 2 * tig);
      }
#pragma unroll
      for (int nt = 0; nt < kBN / 8; ++nt) {
        const T* brow = dt + (nt * 8 + g) * dps + kk + 2 * tig;
        const std::uint32_t b0 = *reinterpret_cast<const std::uint32_t*>(brow);
        const std::uint32_t b1 = *reinterpret_cast<const std::uint32_t*>(brow + 8);
        mma_16816(acc[nt], a, b0, b1, bf16);
        if (split) mma_16816(acc[nt], al, b0, b1, bf16);
      }
    }
    // Running max per row over the valid doc tokens of this tile (invalid ones: -inf, never the max).
#pragma unroll
    for (int nt = 0; nt < kBN / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = nt * 8 + 2 * tig + (e & 1), h = e >> 1;
        if (!colvalid[stage * kBN + c]) continue;
        const float scale = colscale[stage * kBN + c];
        const float v = scale == 0.0f ? 0.0f : (scale == 1.0f ? acc[nt][e] : acc[nt][e] * scale);
        if (row_ok[h]) bad |= !isfinite(v);
        m[h] = fmaxf(m[h], v);
      }
    __syncthreads();  // the next iteration's load overwrites this stage
  }
  for (int h = 0; h < 2; ++h) {
    m[h] = fmaxf(m[h], __shfl_xor_sync(0xffffffffu, m[h], 1));
    m[h] = fmaxf(m[h], __shfl_xor_sync(0xffffffffu, m[h], 2));
  }
  if (tig == 0) {
    rowmax[warp * 16 + g] = m[0];
    rowmax[warp * 16 + g + 8] = m[1];
  }
  __syncthreads();
  if (p.lq_pad <= BM) {  // whole queries: BM / lq_pad of them
    const int per_block = BM / p.lq_pad;
    for (int jq = tid; jq < per_block; jq += WARPS * 32) {
      const i64 q = row0 / p.lq_pad + jq;
      if (q >= p.n_queries) continue;
      const float s = doc < 0 ? kNegInf : sum_rows(rowmax + jq * p.lq_pad, p.qcount[q], bad);
      p.out.scores[q * p.out.ncols + col] = s;
    }
  } else if (tid == 0) {  // one chunk of one query: a partial sum, added up by reduce_chunks_kernel
    const i64 q = row0 / p.lq_pad;
    const i64 base = row0 % p.lq_pad;
    const i64 rows_left = p.qcount[q] - base;
    const int rows = rows_left <= 0 ? 0 : (rows_left < BM ? static_cast<int>(rows_left) : BM);
    bool ignored = false;  // the total is checked by reduce_chunks_kernel
    const float s = doc < 0 ? kNegInf : sum_rows(rowmax, rows, ignored);
    p.out.partial[(static_cast<i64>(chunk) * p.n_queries + q) * p.out.ncols + col] = s;
  }
  if (__syncthreads_or(bad) && tid == 0) atomicOr(p.out.flags, kFlagNonFinite);
}

__global__ void reduce_chunks_kernel(Output out, i64 n_queries, int chunks) {
  const i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x;
  if (i >= n_queries * out.ncols) return;
  float s = 0.0f;
  bool neg_inf = false;
  for (int c = 0; c < chunks; ++c) {
    const float v = out.partial[c * n_queries * out.ncols + i];
    s += v;
    neg_inf |= v == kNegInf;
  }
  if (!isfinite(s) && !(neg_inf && s == kNegInf)) atomicOr(out.flags, kFlagNonFinite);
  out.scores[i] = s;
}

// --- SIMT kernel (float32 arithmetic) -----------------------------------------------------------------------------

constexpr int kSimtThreads = 128;

template <class T>
__global__ void __launch_bounds__(kSimtThreads)
    maxsim_simt_kernel(const float* qpacked, const int* qcount, i64 n_queries, int lq_pad, SetsDev docs, i64 dim,
                       bool multiply, Output out, i64 block_base) {
  __shared__ float red[kSimtThreads / 32];
  __shared__ float rowmax_s;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const i64 pair = block_base + blockIdx.x;  // q * ncols + col
  const i64 q = pair / out.ncols, col = pair % out.ncols;
  const i64 doc = out.cand ? out.cand[pair] : col;
  const int cnt = qcount[q];
  bool bad = false;
  float s = 0.0f;
  bool neg_inf = false;
  if (doc < 0) {
    s = kNegInf;
    neg_inf = true;
  } else {
    i64 first, len;
    docs.locate(doc, first, len);
    const T* dtok = static_cast<const T*>(docs.tokens) + first;
    for (int r = 0; r < cnt; ++r) {
      const float* qr = qpacked + (q * lq_pad + r) * dim;
      float local = kNegInf;
      for (i64 t = tid; t < len; t += kSimtThreads) {
        float w = 1.0f;
        if (docs.weights) w = docs.weights[doc * docs.fixed_len + t];
        if (!multiply && w == 0.0f) continue;
        float v = 0.0f;
        if (w != 0.0f) {
          const T* dr = dtok + t * docs.row_stride;
          for (i64 c = 0; c < dim; ++c) v = fmaf(qr[c], to_f32<T>(dr[c]), v);
          if (w != 1.0f) v *= w;
        }
        bad |= !isfinite(v);
        local = fmaxf(local, v);
      }
      for (int o = 16; o > 0; o >>= 1) local = fmaxf(local, __shfl_xor_sync(0xffffffffu, local, o));
      if (lane == 0) red[warp] = local;
      __syncthreads();
      if (tid == 0) {
        float mx = red[0];
        for (int w2 = 1; w2 < kSimtThreads / 32; ++w2) mx = fmaxf(mx, red[w2]);
        rowmax_s = mx;
      }
      __syncthreads();
      s += rowmax_s;
      neg_inf |= rowmax_s == kNegInf;
      __syncthreads();
    }
  }
  if (tid == 0) {
    if (!isfinite(s) && !(neg_inf && s == kNegInf)) bad = true;
    out.scores[pair] = s;
  }
  if (__syncthreads_or(bad) && tid == 0) atomicOr(out.flags, kFlagNonFinite);
}

// --- top-k over score rows ----------------------------------------------------------------------------------------

constexpr int kSelectThreads = 256;

__global__ void __launch_bounds__(kSelectThreads)
    topk_rows_kernel(const float* scores, i64 ncols, const i64* ids, int k, int kpad, bool larger_is_better, float pad,
                     float* out_scores, i64* out_ids) {
  SIMKERN_DYNAMIC_SMEM(smem_raw);
  std::uint64_t* sorted = reinterpret_cast<std::uint64_t*>(smem_raw);
  unsigned* hist = reinterpret_cast<unsigned*>(sorted + kpad);
  __shared__ SelectShared sel;
  const i64 r = blockIdx.x;
  const float* row = scores + r * ncols;
  const i64* row_ids = ids ? ids + r * ncols : nullptr;
  const auto get = [&](i64 i) -> std::uint64_t {
    const i64 id = row_ids ? row_ids[i] : i;
    const float v = row[i];
    if (id < 0 || isnan(v)) return kInvalidKey;
    return make_key(v, static_cast<std::uint32_t>(id), larger_is_better);
  };
  block_select_sorted(get, ncols, k, kpad, sorted, hist, sel);
  write_keys(sorted, k, larger_is_better, pad, out_scores + r * k, out_ids + r * k);
}

// --- host side --------------------------------------------------------------------------------------------------

int device_cc(int* max_optin_smem) {
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  int major = 0, minor = 0;
  check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "cudaDeviceGetAttribute");
  check(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev), "cudaDeviceGetAttribute");
  check(cudaDeviceGetAttribute(max_optin_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "cudaDeviceGetAttribute");
  return major * 10 + minor;
}

inline unsigned blocks_for(i64 n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

// The device-side view of a SetBatch (offsets and mask normalised into the workspace).
SetsDev sets_dev(const SetBatch& b, i64* offsets64, float* weights, cudaStream_t stream) {
  SetsDev s{};
  s.tokens = b.tokens.data;
  s.dtype = b.tokens.dtype;
  s.n_sets = b.n_sets;
  if (b.ragged()) {
    s.row_stride = b.tokens.strides[0];
    to_i64(b.offsets.data, b.offsets.dtype, b.n_sets + 1, offsets64, stream);
    s.offsets = offsets64;
  } else {
    s.set_stride = b.tokens.strides[0];
    s.row_stride = b.tokens.strides[1];
    s.fixed_len = b.tokens.shape[1];
    if (b.mask.data && b.n_sets * s.fixed_len > 0) {
      SIMKERN_LAUNCH(mask_to_f32_kernel, blocks_for(b.n_sets * s.fixed_len, 256), 256, 0, stream)(b.mask, b.n_sets,
                                                                                                  s.fixed_len, weights);
      check_launch("mask_to_f32_kernel");
      s.weights = weights;
    }
  }
  return s;
}

i64 set_dim(const SetBatch& b) { return b.ragged() ? b.tokens.shape[1] : b.tokens.shape[2]; }

template <class T, int WARPS>
void launch_mma(const MmaParams& params, i64 blocks, std::size_t smem, cudaStream_t stream) {
  auto kernel = maxsim_mma_kernel<T, WARPS>;
  set_max_dynamic_smem(kernel, smem);
  in_launches(blocks, max_blocks_per_launch(), [&](i64 first, i64 count) {
    MmaParams p = params;
    p.block_base = first;
    SIMKERN_LAUNCH(kernel, static_cast<unsigned>(count), WARPS * 32, smem, stream)(p);
    check_launch("maxsim_mma_kernel");
  });
}

template <class T>
void launch_mma_warps(int warps, const MmaParams& p, i64 blocks, std::size_t smem, cudaStream_t stream) {
  if (warps == 1) launch_mma<T, 1>(p, blocks, smem, stream);
  else if (warps == 2) launch_mma<T, 2>(p, blocks, smem, stream);
  else launch_mma<T, 4>(p, blocks, smem, stream);
}

template <class T>
void launch_pack(const SetsDev& q, i64 dim, int dp, int lq_pad, bool multiply, T* hi, T* lo, int* count, int* flags,
                 cudaStream_t stream) {
  if (q.n_sets == 0) return;
  SIMKERN_LAUNCH(pack_queries_kernel<T>, static_cast<unsigned>(q.n_sets), 256, 0, stream)(q, dim, dp, lq_pad, multiply,
                                                                                          hi, lo, count, flags);
  check_launch("pack_queries_kernel");
}

// Scores into `scores` (n_queries, ncols); returns the path taken. flags: a device int (zeroed by the caller).
// cand64: the candidate ids as int64 (n_queries, C), converted once by the caller (maxsim_topk reuses them as the
// top-k's ids), or nullptr without candidates.
const char* run_scores(const MaxsimArgs& a, const i64* cand64, float* scores, int* flags, cudaStream_t stream) {
  const i64 nq = a.queries.n_sets, nd = a.docs.n_sets, dim = set_dim(a.queries);
  const bool cand = a.candidates.data != nullptr;
  const i64 ncols = cand ? a.candidates.shape[1] : nd;
  if (nq == 0 || ncols == 0) return "empty";
  const bool multiply = a.mask_mode == MaskMode::kMultiply;
  int max_smem = 0;
  const int cc = device_cc(&max_smem);
  const int ddt = a.docs.tokens.dtype;
  const bool half_docs = ddt == kF16 || ddt == kBF16;
  const i64 max_len = a.queries.max_len;

  // Workspace: normalised offsets / masks / candidates, packed queries, partial sums.
  const int dp16 = static_cast<int>((dim + 15) / 16 * 16);
  int lq_pad = max_len <= 16 ? 16 : (max_len <= 32 ? 32 : static_cast<int>((max_len + 63) / 64 * 64));
  int warps = 4;
  if (cand) warps = lq_pad >= 64 ? 4 : lq_pad / 16;
  else if (lq_pad < 64 && nq * lq_pad < 64) warps = lq_pad / 16;
  const int bm = 16 * warps;
  const bool split = a.queries.tokens.dtype != ddt || (multiply && a.queries.mask.data);
  bool tensor_core = half_docs && cc >= 80 && dim <= 256;
  if (a.path == MaxsimPath::kSimt) tensor_core = false;
  if (a.path == MaxsimPath::kTensorCore && !tensor_core)
    throw CudaError(
        "simkern.cuda: the tensor-core MaxSim kernel needs float16 / bfloat16 docs, dim <= 256 and "
        "a GPU of compute capability 8.0 or newer");
  const std::size_t smem = mma_smem_bytes(warps, dp16, split);
  if (tensor_core && smem > static_cast<std::size_t>(max_smem)) tensor_core = false;
  if (!tensor_core) lq_pad = static_cast<int>(max_len > 0 ? max_len : 1);
  const int dp = tensor_core ? dp16 : static_cast<int>(dim);
  const int chunks = tensor_core && lq_pad > bm ? lq_pad / bm : 1;
  const i64 q_rows = tensor_core ? (nq * lq_pad + bm - 1) / bm * bm : nq * lq_pad;
  const std::size_t elem = tensor_core ? 2 : 4;

  Carver c;
  const std::size_t o_qoff = c.add(a.queries.ragged() ? (nq + 1) * sizeof(i64) : 0);
  const std::size_t o_doff = c.add(a.docs.ragged() ? (nd + 1) * sizeof(i64) : 0);
  const std::size_t o_qmask = c.add(a.queries.mask.data ? nq * a.queries.tokens.shape[1] * sizeof(float) : 0);
  const std::size_t o_dmask = c.add(a.docs.mask.data ? nd * a.docs.tokens.shape[1] * sizeof(float) : 0);
  const std::size_t o_hi = c.add(q_rows * dp * elem);
  const std::size_t o_lo = c.add(tensor_core && split ? q_rows * dp * elem : 0);
  const std::size_t o_cnt = c.add(nq * sizeof(int));
  const std::size_t o_part = c.add(chunks > 1 ? chunks * nq * ncols * sizeof(float) : 0);
  Workspace ws(c.total, stream);
  unsigned char* base = ws.as<unsigned char>();
  const SetsDev qd =
      sets_dev(a.queries, reinterpret_cast<i64*>(base + o_qoff), reinterpret_cast<float*>(base + o_qmask), stream);
  const SetsDev dd =
      sets_dev(a.docs, reinterpret_cast<i64*>(base + o_doff), reinterpret_cast<float*>(base + o_dmask), stream);
  Output out{scores, reinterpret_cast<float*>(base + o_part), ncols, nullptr, flags};
  out.cand = cand64;
  int* qcount = reinterpret_cast<int*>(base + o_cnt);
  if (tensor_core) {
    const bool bf16 = ddt == kBF16;
    void* hi = base + o_hi;
    void* lo = split ? base + o_lo : nullptr;
    const i64 tail = (q_rows - nq * lq_pad) * dp;
    if (bf16) {
      launch_pack<__nv_bfloat16>(qd, dim, dp, lq_pad, multiply, static_cast<__nv_bfloat16*>(hi),
                                 static_cast<__nv_bfloat16*>(lo), qcount, flags, stream);
    } else {
      launch_pack<__half>(qd, dim, dp, lq_pad, multiply, static_cast<__half*>(hi), static_cast<__half*>(lo), qcount,
                          flags, stream);
    }
    if (tail > 0) {  // rows of the last block past the last query
      const i64 at = nq * lq_pad * dp;
      if (bf16) {
        SIMKERN_LAUNCH(zero_kernel<__nv_bfloat16>, blocks_for(tail, 256), 256, 0, stream)(
            static_cast<__nv_bfloat16*>(hi) + at, tail);
        if (lo)
          SIMKERN_LAUNCH(zero_kernel<__nv_bfloat16>, blocks_for(tail, 256), 256, 0, stream)(
              static_cast<__nv_bfloat16*>(lo) + at, tail);
      } else {
        SIMKERN_LAUNCH(zero_kernel<__half>, blocks_for(tail, 256), 256, 0, stream)(static_cast<__half*>(hi) + at, tail);
        if (lo)
          SIMKERN_LAUNCH(zero_kernel<__half>, blocks_for(tail, 256), 256, 0, stream)(static_cast<__half*>(lo) + at,
                                                                                     tail);
      }
      check_launch("zero_kernel");
    }
    MmaParams p{};
    p.qhi = hi;
    p.qlo = lo;
    p.qcount = qcount;
    p.n_queries = nq;
    p.lq_pad = lq_pad;
    p.dp = dp;
    p.chunks = chunks;
    p.n_row_blocks = q_rows / bm;
    p.docs = dd;
    p.dim = dim;
    p.multiply = multiply;
    const auto addr = reinterpret_cast<std::uintptr_t>(a.docs.tokens.data);
    p.vec16 = dim % 8 == 0 && addr % 16 == 0 && (dd.row_stride % 8 == 0) && (dd.offsets || dd.set_stride % 8 == 0);
    p.out = out;
    const i64 blocks = cand ? nq * ncols * chunks : nd * p.n_row_blocks;
    if (bf16) launch_mma_warps<__nv_bfloat16>(warps, p, blocks, smem, stream);
    else launch_mma_warps<__half>(warps, p, blocks, smem, stream);
    if (chunks > 1) {
      SIMKERN_LAUNCH(reduce_chunks_kernel, blocks_for(nq * ncols, 256), 256, 0, stream)(out, nq, chunks);
      check_launch("reduce_chunks_kernel");
    }
    return bf16 ? "maxsim_mma_bf16" : "maxsim_mma_f16";
  }
  float* qf = reinterpret_cast<float*>(base + o_hi);
  launch_pack<float>(qd, dim, dp, lq_pad, multiply, qf, nullptr, qcount, flags, stream);
  in_launches(nq * ncols, max_blocks_per_launch(), [&](i64 first, i64 count) {
    const auto blocks = static_cast<unsigned>(count);
    switch (ddt) {
      case kF32:
        SIMKERN_LAUNCH(maxsim_simt_kernel<float>, blocks, kSimtThreads, 0, stream)(qf, qcount, nq, lq_pad, dd, dim,
                                                                                   multiply, out, first);
        break;
      case kF16:
        SIMKERN_LAUNCH(maxsim_simt_kernel<__half>, blocks, kSimtThreads, 0, stream)(qf, qcount, nq, lq_pad, dd, dim,
                                                                                    multiply, out, first);
        break;
      default:
        SIMKERN_LAUNCH(maxsim_simt_kernel<__nv_bfloat16>, blocks, kSimtThreads, 0, stream)(qf, qcount, nq, lq_pad, dd,
                                                                                           dim, multiply, out, first);
        break;
    }
    check_launch("maxsim_simt_kernel");
  });
  return "maxsim_simt_f32";
}

CallReport finish(int* flags_dev, bool check_finite, const char* path, cudaStream_t stream) {
  CallReport r;
  r.path = path;
  if (check_finite) {
    int host = 0;
    check(cudaMemcpyAsync(&host, flags_dev, sizeof(int), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    r.flags = host;
  }
  return r;
}

}  // namespace

void to_i64(const void* src, int dtype, i64 count, i64* dst, cudaStream_t stream) {
  if (count <= 0) return;
  SIMKERN_LAUNCH(to_i64_kernel, static_cast<unsigned>((count + 255) / 256), 256, 0, stream)(src, dtype, count, dst);
  check_launch("to_i64_kernel");
}

// The candidate ids (n_queries, C) of any integer dtype as int64, in `dst` (nullptr when there are none). The
// Python layer passes them C-contiguous.
static const i64* candidates_i64(const MaxsimArgs& args, i64* dst, cudaStream_t stream) {
  if (!args.candidates.data) return nullptr;
  to_i64(args.candidates.data, args.candidates.dtype, args.candidates.shape[0] * args.candidates.shape[1], dst, stream);
  return dst;
}

CallReport maxsim_scores(const MaxsimArgs& args, float* scores, std::uintptr_t stream_handle) {
  const cudaStream_t stream = as_stream(stream_handle);
  Carver c;
  const std::size_t o_flags = c.add(sizeof(int));
  const std::size_t o_cand =
      c.add(static_cast<std::size_t>(args.candidates.shape[0] * args.candidates.shape[1]) * sizeof(i64));
  Workspace ws(c.total, stream);
  int* flags = reinterpret_cast<int*>(ws.as<unsigned char>() + o_flags);
  check(cudaMemsetAsync(flags, 0, sizeof(int), stream), "cudaMemsetAsync");
  const i64* cand = candidates_i64(args, reinterpret_cast<i64*>(ws.as<unsigned char>() + o_cand), stream);
  const char* path = run_scores(args, cand, scores, flags, stream);
  return finish(flags, args.check_finite, path, stream);
}

CallReport maxsim_topk(const MaxsimArgs& args, i64 k, float* out_scores, i64* out_ids, std::uintptr_t stream_handle) {
  const cudaStream_t stream = as_stream(stream_handle);
  const i64 nq = args.queries.n_sets;
  const bool cand = args.candidates.data != nullptr;
  const i64 ncols = cand ? args.candidates.shape[1] : args.docs.n_sets;
  Carver c;
  const std::size_t o_flags = c.add(sizeof(int));
  const std::size_t o_scores = c.add(static_cast<std::size_t>(nq * ncols) * sizeof(float));
  const std::size_t o_ids = c.add(cand ? static_cast<std::size_t>(nq * ncols) * sizeof(i64) : 0);
  Workspace ws(c.total, stream);
  int* flags = reinterpret_cast<int*>(ws.as<unsigned char>() + o_flags);
  float* scores = reinterpret_cast<float*>(ws.as<unsigned char>() + o_scores);
  check(cudaMemsetAsync(flags, 0, sizeof(int), stream), "cudaMemsetAsync");
  const i64* ids = candidates_i64(args, reinterpret_cast<i64*>(ws.as<unsigned char>() + o_ids), stream);
  const char* path = run_scores(args, ids, scores, flags, stream);
  if (nq > 0) {
    const int kpad = pow2_at_least(k);
    const std::size_t smem = kpad * sizeof(std::uint64_t) + 256 * sizeof(unsigned);
    set_max_dynamic_smem(topk_rows_kernel, smem);
    SIMKERN_LAUNCH(topk_rows_kernel, static_cast<unsigned>(nq), kSelectThreads, smem, stream)(
        scores, ncols, ids, static_cast<int>(k), kpad, true, kNegInf, out_scores, out_ids);
    check_launch("topk_rows_kernel");
  }
  return finish(flags, args.check_finite, path, stream);
}

}  // namespace cuda
}  // namespace simkern
