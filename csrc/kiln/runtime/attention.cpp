// attention.cpp — fused (flash) attention, forward and backward, on kiln's thread pool.
//
// softmax(scale * Q Kᵀ [+ causal mask]) V over blocks of BR query rows and BC key rows, with the
// running row max and row sum of the online softmax: the Sq x Sk matrix never exists in memory and
// key blocks wholly above the causal diagonal are skipped. The backward recomputes each probability
// block from the saved log-sum-exp (FlashAttention-2). Operands are read through arbitrary element
// strides and packed into small contiguous, zero-padded blocks, so every inner loop runs on whole
// vectors with no tails.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "kiln/runtime/kiln_prelude.h"
#include "kiln/runtime/kiln_runtime.h"
#include "kiln/runtime/softmax_exp.h"

#pragma GCC visibility push(hidden)
#include "kiln/runtime/gemm_pack.h"  // the 16x16 float transposes
#pragma GCC visibility pop

namespace kiln_rt::attn {
namespace {

constexpr int64_t BR = 64;  // query rows per block
constexpr int64_t BC = 64;  // key rows per block

template <typename T>
struct Vec {
  static constexpr int L = 64 / sizeof(T);  // one 512-bit vector (two 256-bit halves on AVX2)
  typedef T type __attribute__((vector_size(64), aligned(sizeof(T))));
  static type lane_indices() {  // {0, 1, ..., L - 1}: lane compares mask by position
    type v;
    for (int i = 0; i < L; ++i) v[i] = T(i);
    return v;
  }
};

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

template <typename T>
struct Buffer {  // uninitialised scratch, freed on scope exit
  T* p;
  // 64-byte aligned: the blocks are walked in whole vectors.
  explicit Buffer(int64_t n) : p(static_cast<T*>(std::aligned_alloc(64, bytes(n)))) {}
  static size_t bytes(int64_t n) { return (sizeof(T) * static_cast<size_t>(std::max<int64_t>(n, 1)) + 63) / 64 * 64; }
  ~Buffer() { std::free(p); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

// C[0:M, 0:N] (+)= A(i, k) B[k, 0:N] with A(i, k) = a[i * ars + k * acs] (broadcast, any layout), B row
// major with pitch ldb, C row major with pitch ldc; N a multiple of the vector length. The MR x NV
// tile of C stays in registers for the whole k loop.
template <typename T, int MR, int NV>
void tile(int64_t K, const T* a, int64_t ars, int64_t acs, const T* b, int64_t ldb, T* c, int64_t ldc, bool acc) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::L;
  V r[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) r[i][j] = acc ? *reinterpret_cast<const V*>(c + i * ldc + j * L) : V{};
  for (int64_t k = 0; k < K; ++k) {
    const T* bk = b + k * ldb;
    V bv[NV];
    for (int j = 0; j < NV; ++j) bv[j] = *reinterpret_cast<const V*>(bk + j * L);
    for (int i = 0; i < MR; ++i) {
      T s = a[i * ars + k * acs];
      for (int j = 0; j < NV; ++j) r[i][j] += s * bv[j];
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) *reinterpret_cast<V*>(c + i * ldc + j * L) = r[i][j];
}

template <typename T, int NV>
void rows(int64_t M, int64_t K, const T* a, int64_t ars, int64_t acs, const T* b, int64_t ldb, T* c, int64_t ldc,
          bool acc) {
  constexpr int MR = NV <= 2 ? 8 : 6;  // MR * NV accumulators + NV operands within 32 vector registers
  int64_t i = 0;
  for (; i + MR <= M; i += MR) tile<T, MR, NV>(K, a + i * ars, ars, acs, b, ldb, c + i * ldc, ldc, acc);
  for (; i + 4 <= M; i += 4) tile<T, 4, NV>(K, a + i * ars, ars, acs, b, ldb, c + i * ldc, ldc, acc);
  for (; i + 2 <= M; i += 2) tile<T, 2, NV>(K, a + i * ars, ars, acs, b, ldb, c + i * ldc, ldc, acc);
  for (; i < M; ++i) tile<T, 1, NV>(K, a + i * ars, ars, acs, b, ldb, c + i * ldc, ldc, acc);
}

template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, const T* a, int64_t ars, int64_t acs, const T* b, int64_t ldb, T* c,
          int64_t ldc, bool acc) {
  constexpr int L = Vec<T>::L;
  for (int64_t n0 = 0; n0 < N; n0 += 4 * L) {
    switch (std::min<int64_t>(4, (N - n0) / L)) {
      case 1: rows<T, 1>(M, K, a, ars, acs, b + n0, ldb, c + n0, ldc, acc); break;
      case 2: rows<T, 2>(M, K, a, ars, acs, b + n0, ldb, c + n0, ldc, acc); break;
      case 3: rows<T, 3>(M, K, a, ars, acs, b + n0, ldb, c + n0, ldc, acc); break;
      default: rows<T, 4>(M, K, a, ars, acs, b + n0, ldb, c + n0, ldc, acc); break;
    }
  }
}

// Lane reductions: the AVX-512 shuffle trees where available, else a loop over the lanes.
template <typename V>
auto horizontal_max(V m) {
#if defined(__AVX512F__)
  if constexpr (sizeof(m[0]) == 4) return _mm512_reduce_max_ps(reinterpret_cast<__m512>(m));
  else return _mm512_reduce_max_pd(reinterpret_cast<__m512d>(m));
#else
  auto r = m[0];
  for (size_t i = 1; i < sizeof(V) / sizeof(r); ++i) r = m[i] > r ? m[i] : r;
  return r;
#endif
}

template <typename V>
auto horizontal_sum(V s) {
#if defined(__AVX512F__)
  if constexpr (sizeof(s[0]) == 4) return _mm512_reduce_add_ps(reinterpret_cast<__m512>(s));
  else return _mm512_reduce_add_pd(reinterpret_cast<__m512d>(s));
#else
  auto r = s[0];
  for (size_t i = 1; i < sizeof(V) / sizeof(r); ++i) r += s[i];
  return r;
#endif
}

// Max and sum of one block row of BC elements with vector accumulators (a scalar loop would not
// vectorize: reordering float reductions needs -ffast-math, which generated code never uses).
template <typename T>
T row_max(const T* x, T init) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::L;
  V m = *reinterpret_cast<const V*>(x);
  for (int64_t c = L; c < BC; c += L) {
    V y = *reinterpret_cast<const V*>(x + c);
    m = m > y ? m : y;
  }
  return std::max(horizontal_max(m), init);
}

template <typename T>
T row_sum(const T* x) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::L;
  V s{};
  for (int64_t c = 0; c < BC; c += L) s += *reinterpret_cast<const V*>(x + c);
  return horizontal_sum(s);
}

// A strided [b1, b2, rows, cols] operand.
template <typename T>
struct Operand {
  T* p;
  int64_t s1, s2, rs, cs;
  T* at(int64_t i1, int64_t i2) const { return p + i1 * s1 + i2 * s2; }
};

// dst[r * ld + c] = scale * src(r0 + r, c) for r < n, c < cols; zero elsewhere in [0, nr) x [0, ld).
template <typename T>
void pack_rows(T* dst, int64_t ld, int64_t nr, const T* src, int64_t rs, int64_t cs, int64_t r0, int64_t n,
               int64_t cols, T scale) {
  for (int64_t r = 0; r < nr; ++r) {
    T* d = dst + r * ld;
    if (r < n) {
      const T* s = src + (r0 + r) * rs;
      if (cs == 1)
        for (int64_t c = 0; c < cols; ++c) d[c] = scale * s[c];
      else
        for (int64_t c = 0; c < cols; ++c) d[c] = scale * s[c * cs];
      for (int64_t c = cols; c < ld; ++c) d[c] = T(0);
    } else {
      for (int64_t c = 0; c < ld; ++c) d[c] = T(0);
    }
  }
}

// dst[c * ld + r] = src(r0 + r, c): a block of rows transposed (columns of the result are rows of src);
// zero for r in [n, ld).
template <typename T>
void pack_transposed(T* dst, int64_t ld, int64_t cols, const T* src, int64_t rs, int64_t cs, int64_t r0, int64_t n) {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4) {
    // 16x16 register transposes: the strided scalar copy was ~9% of the backward task's own time.
    if (cs == 1 && ld == BC) {
      gemm::pack_sliver_f32<BC>(src + r0 * rs, rs, 1, static_cast<int>(n), cols, dst);
      return;
    }
  }
#endif
  for (int64_t c = 0; c < cols; ++c) {
    T* d = dst + c * ld;
    const T* s = src + r0 * rs + c * cs;
    for (int64_t r = 0; r < n; ++r) d[r] = s[r * rs];
    for (int64_t r = n; r < ld; ++r) d[r] = T(0);
  }
}

struct Shape {
  int64_t b1, b2, sq, sk, d, dv;
  bool causal;
  int64_t nqb() const { return (sq + BR - 1) / BR; }
  int64_t nkb() const { return (sk + BC - 1) / BC; }
  // Key blocks a query block [i0, i1) sees: all, or (causal, j <= i) those starting at or before i1 - 1.
  int64_t kb_end(int64_t i0, int64_t i1) const {
    (void)i0;
    return causal ? std::min(nkb(), (i1 - 1) / BC + 1) : nkb();
  }
};

// Tasks handed out by an atomic counter from inside one parallel_for chunk per thread: costs differ
// (causal blocks near the top are cheap), so a static split would leave a thread idle.
struct TaskQueue {
  std::atomic<int64_t> next{0};
  int64_t count;
  void* ctx;
  void (*run)(void*, int64_t);
};

void drain(void* q, int64_t, int64_t) {
  auto* tq = static_cast<TaskQueue*>(q);
  for (int64_t t; (t = tq->next.fetch_add(1, std::memory_order_relaxed)) < tq->count;) tq->run(tq->ctx, t);
}

void run_tasks(int64_t count, void* ctx, void (*run)(void*, int64_t)) {
  TaskQueue q;
  q.count = count;
  q.ctx = ctx;
  q.run = run;
  int64_t threads = std::min<int64_t>(kiln_get_num_threads(), count);
  kiln_parallel_for(0, std::max<int64_t>(threads, 1), 1, drain, &q);
}

// Qᵀ of a block of query rows: dst[c * BR + r] = scale * src[r * rs + c * cs] for r < nr, c < d; the
// columns r >= nr are zero.
template <typename T>
void pack_queries_transposed(T* dst, const T* src, int64_t rs, int64_t cs, int64_t nr, int64_t d, T scale) {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4) {
    if (cs == 1) {
      gemm::pack_sliver_f32<BR>(src, rs, 1, static_cast<int>(nr), d, dst);
      for (int64_t i = 0; i < d * BR; ++i) dst[i] *= scale;
      return;
    }
  }
#endif
  for (int64_t r = 0; r < BR; ++r)
    for (int64_t c = 0; c < d; ++c) dst[c * BR + r] = r < nr ? scale * src[r * rs + c * cs] : T(0);
}

// The inverse for the result: dst[r * rs + c * cs] = src[c * BR + r] * inv[r] for r < nr, c < dv.
template <typename T>
void unpack_output_transposed(T* dst, int64_t rs, int64_t cs, const T* src, const T* inv, int64_t nr, int64_t dv) {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4) {
    if (cs == 1) {
      for (int64_t r0 = 0; r0 < nr; r0 += 16)
        for (int64_t c0 = 0; c0 < dv; c0 += 16) {
          __m512 x[16];
#pragma GCC unroll 16
          for (int i = 0; i < 16; ++i)
            x[i] = c0 + i < dv ? _mm512_loadu_ps(src + (c0 + i) * BR + r0) : _mm512_setzero_ps();
          gemm::transpose16x16(x);
          const __mmask16 cm = gemm::lane_mask16(dv - c0);
#pragma GCC unroll 16
          for (int i = 0; i < 16; ++i)
            if (r0 + i < nr)
              _mm512_mask_storeu_ps(dst + (r0 + i) * rs + c0, cm, _mm512_mul_ps(x[i], _mm512_set1_ps(inv[r0 + i])));
        }
      return;
    }
  }
#endif
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t c = 0; c < dv; ++c) dst[r * rs + c * cs] = src[c * BR + r] * inv[r];
}

// ---- forward --------------------------------------------------------------------------------------
// Each task is one block of BR query rows, worked in transposed form: the score block is Sᵀ = K Qᵀ
// (key rows by query columns) and the output accumulates as Oᵀ = Vᵀ Pᵀ. With query rows in vector
// lanes, the online softmax's row max, row sum and rescaling are plain lane-wise operations down the
// key rows: no horizontal reductions and no scalar exp per row, which at 64 keys per block had made
// the softmax cost more than the two block products. K and V are read in place (the products only
// broadcast their elements), so nothing per key is packed; Qᵀ and Oᵀ are one transpose per task.
template <typename T>
struct Forward {
  Shape sh;
  Operand<const T> q, k, v;
  Operand<T> out, lse;  // lse: [b1, b2, sq] with element stride lse.rs
  T scale;

  // Query blocks per task. They walk the key blocks together, so each K/V block is fetched once for
  // QG query blocks instead of once per query block (K and V of one head outgrow L2 at long
  // sequences): 3-9% faster from S = 1024 up, measured.
  static constexpr int64_t QG = 4;
  int64_t groups() const { return (sh.nqb() + QG - 1) / QG; }

  // One query block's running state: Qᵀ, Oᵀ and the online softmax's max and sum per row.
  struct Rows {
    T* qt;
    T* ot;
    T* m;
    T* l;
    int64_t i0, nr, kbe;
  };

  // Folds key block kb into `w` (see the comment above the struct for the layout).
  //
  // The causal diagonal block (key block = query block, as BR == BC) is a triangle: key j is visible
  // to query r iff j <= r. Its keys go in chunks of L, and chunk g meets only the query vectors h >= g
  // (below, every query is masked), so the products, the softmax and the mask start at vector g for
  // chunk g: a staircase that does 5/8 of the block's work at L = 16. The vectors below are never
  // written or read.
  void step(Rows& w, int64_t kb, const T* kb0, const T* vb0, T* st) const {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::L;
    constexpr int NCH = BR / L;  // vectors across a block's query rows
    static_assert(BR == BC, "the diagonal block must be square");
    const int64_t j0 = kb * BC, nc = std::min(BC, sh.sk - j0);
    const bool diag = sh.causal && j0 == w.i0;
    const int64_t nchunk = diag ? (nc + L - 1) / L : 1;
    auto keys = [&](int64_t g) { return diag ? std::min<int64_t>(L, nc - g * L) : nc; };  // in chunk g
    // Vector h of row j of a block with BR columns (memcpy: GCC drops the typedef's alignment here).
    auto ld = [](const T* p, int64_t j, int h) {
      V x;
      std::memcpy(&x, p + j * BR + h * L, sizeof(V));
      return x;
    };
    auto st_ = [](T* p, int64_t j, int h, V x) { std::memcpy(p + j * BR + h * L, &x, sizeof(V)); };
    for (int64_t g = 0; g < nchunk; ++g)  // S^T = K Q^T
      gemm<T>(keys(g), BR - g * L, sh.d, kb0 + (j0 + g * L) * k.rs, k.rs, k.cs, w.qt + g * L, BR,
              st + g * L * (BR + 1), BR, false);
    // The running max per query lane, down the key rows. On the diagonal, the queries of vector g
    // before key j are masked (-inf) as row j is read.
    const V ninf = V{} - infinity<T>();
    const V lane = Vec<T>::lane_indices();
    V mx[NCH];
    for (int h = 0; h < NCH; ++h) mx[h] = ld(w.m, 0, h);
    for (int64_t g = 0; g < nchunk; ++g)
      for (int64_t j = g * L, je = j + keys(g); j < je; ++j) {
        if (diag) {
          const V x = ld(st, j, static_cast<int>(g));
          st_(st, j, static_cast<int>(g), lane < T(j - g * L) ? ninf : x);
        }
        for (int h = static_cast<int>(g); h < NCH; ++h) {
          const V x = ld(st, j, h);
          mx[h] = x > mx[h] ? x : mx[h];
        }
      }
    V base[NCH], alpha[NCH], sum[NCH];
    for (int h = 0; h < NCH; ++h) {
      base[h] = mx[h] == ninf ? V{} : mx[h];  // nothing visible yet: the row stays all zero
      alpha[h] = softmax_exp(ld(w.m, 0, h) - base[h]);
      st_(w.m, 0, h, mx[h]);
      sum[h] = V{};
    }
    for (int64_t g = 0; g < nchunk; ++g)
      for (int64_t j = g * L, je = j + keys(g); j < je; ++j)
        for (int h = static_cast<int>(g); h < NCH; ++h) {
          const V p = softmax_exp(ld(st, j, h) - base[h]);
          st_(st, j, h, p);
          sum[h] += p;
        }
    for (int h = 0; h < NCH; ++h) st_(w.l, 0, h, ld(w.l, 0, h) * alpha[h] + sum[h]);
    for (int64_t c = 0; c < sh.dv; ++c)
      for (int h = 0; h < NCH; ++h) st_(w.ot, c, h, ld(w.ot, c, h) * alpha[h]);
    for (int64_t g = 0; g < nchunk; ++g)  // O^T += V^T P^T
      gemm<T>(sh.dv, BR - g * L, keys(g), vb0 + (j0 + g * L) * v.rs, v.cs, v.rs, st + g * L * (BR + 1), BR,
              w.ot + g * L, BR, true);
  }

  // Task t: a group of up to QG query blocks of one (b1, b2) slice; groups in descending order of
  // cost (the largest causal ones first), batch-major.
  void task(int64_t t) const {
    const int64_t ng = groups(), nqb = sh.nqb();
    const int64_t g = ng - 1 - t % ng, bb = t / ng;
    const int64_t i1b = bb / sh.b2, i2b = bb % sh.b2;
    const int64_t qb0 = g * QG, nq = std::min(QG, nqb - qb0);
    const int64_t dq = std::max<int64_t>(sh.d, 1) * BR, dvo = std::max<int64_t>(sh.dv, 1) * BR;
    Buffer<T> qt(nq * dq), ot(nq * dvo), ml(nq * 2 * BR), st(BC * BR);
    Rows rows[QG];
    int64_t kbe = 0;
    for (int64_t i = 0; i < nq; ++i) {
      Rows& w = rows[i];
      w.qt = qt.p + i * dq;
      w.ot = ot.p + i * dvo;
      w.m = ml.p + 2 * i * BR;
      w.l = w.m + BR;
      w.i0 = (qb0 + i) * BR;
      w.nr = std::min(BR, sh.sq - w.i0);
      w.kbe = sh.kb_end(w.i0, w.i0 + w.nr);
      kbe = std::max(kbe, w.kbe);
      pack_queries_transposed(w.qt, q.at(i1b, i2b) + w.i0 * q.rs, q.rs, q.cs, w.nr, sh.d, scale);
      std::fill(w.ot, w.ot + sh.dv * BR, T(0));
      std::fill(w.m, w.m + BR, -infinity<T>());
      std::fill(w.l, w.l + BR, T(0));
    }
    const T* kb0 = k.at(i1b, i2b);
    const T* vb0 = v.at(i1b, i2b);
    for (int64_t kb = 0; kb < kbe; ++kb)
      for (int64_t i = 0; i < nq; ++i)
        if (kb < rows[i].kbe) step(rows[i], kb, kb0, vb0, st.p);
    T* ob = out.at(i1b, i2b);
    T* lb = lse.at(i1b, i2b);
    alignas(64) T inv[BR], lrow[BR];
    const T empty = sh.sk == 0 ? T(0) : quiet_nan<T>();
    for (int64_t i = 0; i < nq; ++i) {
      const Rows& w = rows[i];
      // Over the whole block, padding rows included, so that the loop (and its log) vectorizes.
      for (int64_t r = 0; r < BR; ++r) {
        // No visible key: eager's softmax over an all -inf row is NaN; over an empty row the product is 0.
        // (select: with ?: GCC keeps a branch here and the loop stays scalar.)
        const T l = w.l[r];
        inv[r] = select(l > T(0), T(1) / l, empty);
        lrow[r] = select(l > T(0), w.m[r] + kiln_rt::log(l), -infinity<T>());
      }
      for (int64_t r = 0; r < w.nr; ++r) lb[(w.i0 + r) * lse.rs] = lrow[r];
      unpack_output_transposed(ob + w.i0 * out.rs, out.rs, out.cs, w.ot, inv, w.nr, sh.dv);
    }
  }
  static void run(void* self, int64_t t) { static_cast<const Forward*>(self)->task(t); }
};

// ---- backward -------------------------------------------------------------------------------------

// sum over c < n of a[c] * b[c * bs], in vector lanes where b is contiguous (a is a packed row).
template <typename T>
T row_dot(const T* a, const T* b, int64_t bs, int64_t n) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::L;
  T acc = 0;
  int64_t c = 0;
  if (bs == 1) {
    V s{};
    for (; c + L <= n; c += L) {
      V x, y;
      std::memcpy(&x, a + c, sizeof(V));
      std::memcpy(&y, b + c, sizeof(V));
      s += x * y;
    }
    for (int l = 0; l < L; ++l) acc += s[l];  // once per row; GCC warns on the intrinsic reductions here
  }
  for (; c < n; ++c) acc += a[c] * b[c * bs];
  return acc;
}

// dst[c * cs] = scale * src[c] for c < n: contiguous destinations as plain vector loops.
template <typename T>
void store_row(T* dst, int64_t cs, const T* src, int64_t n, T scale) {
  if (cs == 1)
    for (int64_t c = 0; c < n; ++c) dst[c] = scale * src[c];
  else
    for (int64_t c = 0; c < n; ++c) dst[c * cs] = scale * src[c];
}

template <typename T>
struct Backward {
  Shape sh;
  Operand<const T> dout, q, k, v, out, lse;
  Operand<T> dq, dk, dv;
  T scale;

  // Task t: one whole (b1, b2) slice, so dQ accumulates without sharing between threads.
  void task(int64_t t) const {
    int64_t i1b = t / sh.b2, i2b = t % sh.b2;
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::L;
    const V lane = Vec<T>::lane_indices();  // to mask keys from lim on
    const int64_t dp = round_up(std::max<int64_t>(sh.d, 1), L), dvp = round_up(std::max<int64_t>(sh.dv, 1), L);
    const int64_t sqp = round_up(std::max<int64_t>(sh.sq, 1), BR);
    Buffer<T> qs(sqp * dp), dos(sqp * dvp), dqa(sqp * dp), delta(sqp), lrow(sqp);
    Buffer<T> kp(BC * dp), kt(dp * BC), vt(dvp * BC), dka(BC * dp), dva(BC * dvp), p(BR * BC), ds(BR * BC);
    pack_rows(qs.p, dp, sqp, q.at(i1b, i2b), q.rs, q.cs, 0, sh.sq, sh.d, scale);
    pack_rows(dos.p, dvp, sqp, dout.at(i1b, i2b), dout.rs, dout.cs, 0, sh.sq, sh.dv, T(1));
    std::fill(dqa.p, dqa.p + sqp * dp, T(0));
    const T* ob = out.at(i1b, i2b);
    const T* lb = lse.at(i1b, i2b);
    for (int64_t i = 0; i < sh.sq; ++i) {  // delta_i = rowsum(dO * O): the softmax backward's correction
      delta.p[i] = row_dot(dos.p + i * dvp, ob + i * out.rs, out.cs, sh.dv);
      lrow.p[i] = lb[i * lse.rs];
    }
    for (int64_t kb = 0; kb < sh.nkb(); ++kb) {
      int64_t j0 = kb * BC, nc = std::min(BC, sh.sk - j0);
      pack_rows(kp.p, dp, BC, k.at(i1b, i2b), k.rs, k.cs, j0, nc, sh.d, T(1));
      pack_transposed(kt.p, BC, dp, kp.p, dp, 1, 0, BC);
      pack_transposed(vt.p, BC, sh.dv, v.at(i1b, i2b), v.rs, v.cs, j0, nc);
      if (sh.dv < dvp) std::fill(vt.p + sh.dv * BC, vt.p + dvp * BC, T(0));
      std::fill(dka.p, dka.p + BC * dp, T(0));
      std::fill(dva.p, dva.p + BC * dvp, T(0));
      int64_t qb0 = sh.causal ? j0 / BR : 0;  // query blocks wholly above the diagonal see no key here
      for (int64_t qb = qb0; qb < sh.nqb(); ++qb) {
        int64_t i0 = qb * BR, nr = std::min(BR, sh.sq - i0);
        const T* qsb = qs.p + i0 * dp;
        const T* dob = dos.p + i0 * dvp;
        // The diagonal block (causal, key block = query block) as a staircase, as in the forward but
        // by rows: query chunk g (L rows) sees key vectors 0..g only, and key chunk h is seen by the
        // query rows from h L on. Elsewhere one chunk spans the block.
        const bool diag = sh.causal && j0 == i0;
        const int64_t nchunk = diag ? (nr + L - 1) / L : 1;
        auto rows = [&](int64_t g) { return diag ? std::min<int64_t>(L, nr - g * L) : nr; };  // of chunk g
        auto cols = [&](int64_t g) { return diag ? (g + 1) * L : BC; };  // keys query chunk g sees
        for (int64_t g = 0; g < nchunk; ++g) {
          const int64_t r0 = diag ? g * L : 0;
          gemm<T>(rows(g), cols(g), sh.d, qsb + r0 * dp, dp, 1, kt.p, BC, p.p + r0 * BC, BC, false);     // S
          gemm<T>(rows(g), cols(g), sh.dv, dob + r0 * dvp, dvp, 1, vt.p, BC, ds.p + r0 * BC, BC, false);  // dP
        }
        bool edge = nc < BC || diag;
        for (int64_t r = 0; r < nr; ++r) {
          T* pr = p.p + r * BC;
          T* dsr = ds.p + r * BC;
          T lse_r = lrow.p[i0 + r], dl = delta.p[i0 + r];
          if (lse_r == -infinity<T>()) lse_r = infinity<T>();  // nothing visible: every p is 0
          // Keys from lim on are masked (causal) or past the last key: p = 0. One pass computes p and dS.
          const int64_t lim = !edge ? BC : sh.causal ? std::min(nc, i0 + r - j0 + 1) : nc;
          const int64_t cend = diag ? cols(r / L) : BC;
          for (int64_t c = 0; c < cend; c += L) {  // cend is a multiple of L
            V x, g;
            std::memcpy(&x, pr + c, sizeof(V));
            std::memcpy(&g, dsr + c, sizeof(V));
            const V pc = lane + T(c) < T(lim) ? softmax_exp(x - lse_r) : V{};
            g = pc * (g - dl);
            std::memcpy(pr + c, &pc, sizeof(V));
            std::memcpy(dsr + c, &g, sizeof(V));
          }
        }
        const int64_t nkc = diag ? (std::min(nc, nr) + L - 1) / L : 1;  // key chunks seen by some row
        for (int64_t h = 0; h < nkc; ++h) {
          const int64_t c0 = diag ? h * L : 0, kc = diag ? L : BC;  // keys c0 .. c0 + kc, rows c0 .. nr
          gemm<T>(kc, dvp, nr - c0, p.p + c0 * BC + c0, 1, BC, dob + c0 * dvp, dvp, dva.p + c0 * dvp, dvp,
                  true);  // dV += Pᵀ dO
          gemm<T>(kc, dp, nr - c0, ds.p + c0 * BC + c0, 1, BC, qsb + c0 * dp, dp, dka.p + c0 * dp, dp,
                  true);  // dK += dSᵀ (scale Q)
        }
        for (int64_t g = 0; g < nchunk; ++g) {
          const int64_t r0 = diag ? g * L : 0;
          // dQ += dS K
          gemm<T>(rows(g), dp, cols(g), ds.p + r0 * BC, BC, 1, kp.p, dp, dqa.p + (i0 + r0) * dp, dp, true);
        }
      }
      T* dkb = dk.at(i1b, i2b);
      T* dvb = dv.at(i1b, i2b);
      for (int64_t r = 0; r < nc; ++r) {
        store_row(dkb + (j0 + r) * dk.rs, dk.cs, dka.p + r * dp, sh.d, T(1));
        store_row(dvb + (j0 + r) * dv.rs, dv.cs, dva.p + r * dvp, sh.dv, T(1));
      }
    }
    T* dqb = dq.at(i1b, i2b);
    for (int64_t i = 0; i < sh.sq; ++i) store_row(dqb + i * dq.rs, dq.cs, dqa.p + i * dp, sh.d, scale);
  }
  static void run(void* self, int64_t t) { static_cast<const Backward*>(self)->task(t); }
};

}  // namespace
}  // namespace kiln_rt::attn

using kiln_rt::attn::Backward;
using kiln_rt::attn::Forward;
using kiln_rt::attn::Operand;
using kiln_rt::attn::Shape;

#define KILN_ATTENTION_ABI(T, suffix)                                                                            \
  void kiln_attention_fwd_##suffix(const int64_t* shape, int causal, T scale, const T* q, const int64_t* qst,     \
                                   const T* k, const int64_t* kst, const T* v, const int64_t* vst, T* out,         \
                                   const int64_t* ost, T* lse, const int64_t* lst) {                               \
    Forward<T> f{Shape{shape[0], shape[1], shape[2], shape[3], shape[4], shape[5], causal != 0},                  \
                 {q, qst[0], qst[1], qst[2], qst[3]},                                                             \
                 {k, kst[0], kst[1], kst[2], kst[3]},                                                             \
                 {v, vst[0], vst[1], vst[2], vst[3]},                                                             \
                 {out, ost[0], ost[1], ost[2], ost[3]},                                                           \
                 {lse, lst[0], lst[1], lst[2], 0},                                                                \
                 scale};                                                                                          \
    if (f.sh.sq == 0 || f.sh.b1 == 0 || f.sh.b2 == 0) return;                                                     \
    const int64_t nb = f.sh.b1 * f.sh.b2;                                                                         \
    kiln_rt::attn::run_tasks(nb * f.groups(), &f, Forward<T>::run);                                               \
  }                                                                                                               \
  void kiln_attention_bwd_##suffix(const int64_t* shape, int causal, T scale, const T* dout,                     \
                                   const int64_t* gst, const T* q, const int64_t* qst, const T* k,                \
                                   const int64_t* kst, const T* v, const int64_t* vst, const T* out,              \
                                   const int64_t* ost, const T* lse, const int64_t* lst, T* dq,                   \
                                   const int64_t* dqst, T* dk, const int64_t* dkst, T* dv, const int64_t* dvst) { \
    Backward<T> b{Shape{shape[0], shape[1], shape[2], shape[3], shape[4], shape[5], causal != 0},                 \
                  {dout, gst[0], gst[1], gst[2], gst[3]},                                                         \
                  {q, qst[0], qst[1], qst[2], qst[3]},                                                            \
                  {k, kst[0], kst[1], kst[2], kst[3]},                                                            \
                  {v, vst[0], vst[1], vst[2], vst[3]},                                                            \
                  {out, ost[0], ost[1], ost[2], ost[3]},                                                          \
                  {lse, lst[0], lst[1], lst[2], 0},                                                               \
                  {dq, dqst[0], dqst[1], dqst[2], dqst[3]},                                                       \
                  {dk, dkst[0], dkst[1], dkst[2], dkst[3]},                                                       \
                  {dv, dvst[0], dvst[1], dvst[2], dvst[3]},                                                       \
                  scale};                                                                                         \
    if (b.sh.b1 == 0 || b.sh.b2 == 0) return;                                                                     \
    kiln_rt::attn::run_tasks(b.sh.b1 * b.sh.b2, &b, Backward<T>::run);                                             \
  }

extern "C" {
KILN_ATTENTION_ABI(float, f32)
KILN_ATTENTION_ABI(double, f64)
}
