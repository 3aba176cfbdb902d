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
#include <type_traits>
#include <utility>

#include "kiln/runtime/kiln_prelude.h"
#include "kiln/runtime/kiln_runtime.h"
#include "kiln/runtime/simd.h"
#include "kiln/runtime/softmax_exp.h"

#pragma GCC visibility push(hidden)
#include "kiln/runtime/gemm_kernels.h"  // the register-blocked micro-kernels
#include "kiln/runtime/gemm_pack.h"     // transposing packers
#include "kiln/runtime/kernels.h"
#pragma GCC visibility pop

namespace kiln_rt::attn {
namespace {

constexpr int64_t BR = 64;  // query rows per block
constexpr int64_t BC = 64;  // key rows per block

template <typename T>
using Vec = simd::Vec<T>;

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

// ---- block products on the GEMM micro-kernels ------------------------------------------------------
// C[0:M, 0:N] (+)= A B with A(i, k) = a[i * ars + k * acs], where acs == 1 (row panels) or ars == 1
// (interleaved) so the kernels read A in place; B row major with pitch ldb; C row major with pitch
// ldc; N a multiple of the vector length. Tiles are kTileVectors vectors wide and tile_rows(NV)
// rows tall, as many as the level's registers hold; the last rows and columns take smaller tiles
// of the same kernel template, so no operand is padded or copied.
constexpr int kTileVectors = gemm::kWideRegisterFile ? 4 : 2;
constexpr int tile_rows(int nv) { return std::min(8, (simd::kVectorRegisters - nv - 1) / nv); }

template <typename T, int MR, int NV>
void tile(int64_t K, const T* a, int64_t ars, int64_t acs, const T* b, int64_t ldb, T* c, int64_t ldc, bool acc) {
  using Kernel = gemm::MicroKernel<T, MR, NV>;
  const T beta = acc ? T(1) : T(0);
  if (acs == 1)
    Kernel::template run<true>(K, a, ars, b, ldb, c, ldc, MR, Kernel::NR, T(1), beta);
  else
    Kernel::template run<false>(K, a, acs, b, ldb, c, ldc, MR, Kernel::NR, T(1), beta);
}

template <typename T, int NV>
void rows(int64_t M, int64_t K, const T* a, int64_t ars, int64_t acs, const T* b, int64_t ldb, T* c, int64_t ldc,
          bool acc) {
  constexpr int MR = tile_rows(NV);
  int64_t i = 0;
  for (; i + MR <= M; i += MR) tile<T, MR, NV>(K, a + i * ars, ars, acs, b, ldb, c + i * ldc, ldc, acc);
  if constexpr (MR > 4)
    for (; i + 4 <= M; i += 4) tile<T, 4, NV>(K, a + i * ars, ars, acs, b, ldb, c + i * ldc, ldc, acc);
  if constexpr (MR > 2)
    for (; i + 2 <= M; i += 2) tile<T, 2, NV>(K, a + i * ars, ars, acs, b, ldb, c + i * ldc, ldc, acc);
  for (; i < M; ++i) tile<T, 1, NV>(K, a + i * ars, ars, acs, b, ldb, c + i * ldc, ldc, acc);
}

template <typename T>
void products(int64_t M, int64_t N, int64_t K, const T* a, int64_t ars, int64_t acs, const T* b, int64_t ldb, T* c,
              int64_t ldc, bool acc) {
  constexpr int L = Vec<T>::L;
  for (int64_t n0 = 0; n0 < N; n0 += kTileVectors * L) {
    const int64_t nv = std::min<int64_t>(kTileVectors, (N - n0) / L);
    const T* bn = b + n0;
    T* cn = c + n0;
    if (nv == 1) rows<T, 1>(M, K, a, ars, acs, bn, ldb, cn, ldc, acc);
    if constexpr (kTileVectors >= 2)
      if (nv == 2) rows<T, 2>(M, K, a, ars, acs, bn, ldb, cn, ldc, acc);
    if constexpr (kTileVectors >= 3)
      if (nv == 3) rows<T, 3>(M, K, a, ars, acs, bn, ldb, cn, ldc, acc);
    if constexpr (kTileVectors >= 4)
      if (nv == 4) rows<T, 4>(M, K, a, ars, acs, bn, ldb, cn, ldc, acc);
  }
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
// zero for r in [n, ld). Through the packer's register transposes where columns are contiguous.
template <typename T>
void pack_transposed(T* dst, int64_t cols, const T* src, int64_t rs, int64_t cs, int64_t r0, int64_t n) {
  static_assert(BC == BR, "one block width for the packer");
  gemm::pack_sliver_vec<T, BC>(src + r0 * rs, rs, cs, static_cast<int>(n), cols, dst);
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
  gemm::pack_sliver_vec<T, BR>(src, rs, cs, static_cast<int>(nr), d, dst);
  for (int64_t i = 0; i < d * BR; ++i) dst[i] *= scale;
}

// The inverse for the result: dst[r * rs + c * cs] = src[c * BR + r] * inv[r] for r < nr, c < dv, in
// L x L register transposes where the result's columns are contiguous.
template <typename T>
void unpack_output_transposed(T* dst, int64_t rs, int64_t cs, const T* src, const T* inv, int64_t nr, int64_t dv) {
  using X = Vec<T>;
  constexpr int L = X::L;
  if (cs == 1) {
    for (int64_t r0 = 0; r0 < nr; r0 += L)
      for (int64_t c0 = 0; c0 < dv; c0 += L) {
        typename X::V x[L];
        const int cn = static_cast<int>(std::min<int64_t>(L, dv - c0));
#pragma GCC unroll 16
        for (int i = 0; i < L; ++i) x[i] = i < cn ? X::loadu(src + (c0 + i) * BR + r0) : X::zero();
        X::transpose(x);
#pragma GCC unroll 16
        for (int i = 0; i < L; ++i) {
          if (r0 + i >= nr) break;
          const typename X::V y = x[i] * X::set1(inv[r0 + i]);
          if (cn == L)
            X::storeu(dst + (r0 + i) * rs + c0, y);
          else
            X::store_first(dst + (r0 + i) * rs + c0, cn, y);
        }
      }
    return;
  }
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t c = 0; c < dv; ++c) dst[r * rs + c * cs] = src[c * BR + r] * inv[r];
}

// ---- the forward's softmax passes ---------------------------------------------------------------
// Rows [j, je) of a score block with BR columns, its vectors h0 + FIRST .. h0 + HG - 1 (the vectors of
// one group from the first one a staircase chunk meets): the running max, then p = exp(s - base)
// written back and summed. FIRST and HG are constants, so every running value stays in a register.
template <int HG, typename F>
void by_first(int first, F&& f) {  // f(std::integral_constant<int, first>)
  [&]<int... I>(std::integer_sequence<int, I...>) {
    ((first == I ? (f(std::integral_constant<int, I>{}), 0) : 0), ...);
  }(std::make_integer_sequence<int, HG>{});
}

template <int FIRST, int HG, typename T, typename V>
inline void max_rows(const T* st, int64_t j, int64_t je, int h0, V (&mx)[HG]) {
  using X = Vec<T>;
  for (; j < je; ++j)
#pragma GCC unroll 8
    for (int u = FIRST; u < HG; ++u) mx[u] = X::max(X::loadu(st + j * BR + (h0 + u) * X::L), mx[u]);
}

template <int FIRST, int HG, typename T, typename V>
inline void exp_rows(T* st, int64_t j, int64_t je, int h0, const V (&base)[HG], V (&sum)[HG]) {
  using X = Vec<T>;
  for (; j < je; ++j)
#pragma GCC unroll 8
    for (int u = FIRST; u < HG; ++u) {
      T* at = st + j * BR + (h0 + u) * X::L;
      const V p = softmax_exp(X::loadu(at) - base[u]);
      X::storeu(at, p);
      sum[u] += p;
    }
}

template <typename V, typename M>
inline V select_lanes(M c, V a, V b) {
  return c ? a : b;
}

template <typename M>
inline bool any_lane(M c) {  // c: a lane mask from a vector comparison
  bool any = false;
  for (size_t i = 0; i < sizeof(M) / sizeof(c[0]); ++i) any = any || c[i] != 0;
  return any;
}

// How far above the reference a block's max may be before the reference moves (see Forward::step).
constexpr double kSlack = 8.0;

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

  // A block of K (or V) rows j0.. as the products read it: in place when one of its strides is 1
  // (row panels or interleaved), else copied into a row-major block.
  struct KeyBlock {
    const T* p;
    int64_t rs, cs;
  };
  static KeyBlock key_block(const Operand<const T>& x, const T* base, int64_t j0, int64_t nc, int64_t cols, T* copy) {
    if (x.cs == 1 || x.rs == 1) return {base + j0 * x.rs, x.rs, x.cs};
    pack_rows(copy, cols, nc, base, x.rs, x.cs, j0, nc, cols, T(1));
    return {copy, cols, 1};
  }

  // Folds key block kb (its K rows kx, V rows vx) into `w` (see the comment above the struct for the
  // layout).
  //
  // The causal diagonal block (key block = query block, as BR == BC) is a triangle: key j is visible
  // to query r iff j <= r. Its keys go in chunks of L, and chunk g meets only the query vectors h >= g
  // (below, every query is masked), so the products, the softmax and the mask start at vector g for
  // chunk g: a staircase that does (n + 1) / 2n of the block's work for n = BR / L vectors (5/8 at
  // L = 16, 9/16 at L = 8). The vectors below are never written or read.
  //
  // The softmax passes walk the query vectors in groups of HG, down the key rows of each group: HG
  // running maxima and sums stay in registers (a quarter of them at most), and each key row gives HG
  // independent max and add chains.
  void step(Rows& w, int64_t kb, KeyBlock kx, KeyBlock vx, T* st) const {
    using X = Vec<T>;
    using V = typename X::V;
    constexpr int L = X::L;
    constexpr int NCH = BR / L;  // vectors across a block's query rows
    constexpr int HG = std::min(NCH, simd::kVectorRegisters / 8);
    static_assert(BR == BC, "the diagonal block must be square");
    static_assert(NCH % HG == 0, "groups cover the block");
    const int64_t j0 = kb * BC, nc = std::min(BC, sh.sk - j0);
    const bool diag = sh.causal && j0 == w.i0;
    const int64_t nchunk = diag ? (nc + L - 1) / L : 1;
    auto keys = [&](int64_t g) { return diag ? std::min<int64_t>(L, nc - g * L) : nc; };  // in chunk g
    // Vector h of row j of a block with BR columns.
    auto ld = [](const T* p, int64_t j, int h) { return X::loadu(p + j * BR + h * L); };
    auto st_ = [](T* p, int64_t j, int h, V x) { X::storeu(p + j * BR + h * L, x); };
    for (int64_t g = 0; g < nchunk; ++g)  // S^T = K Q^T
      products<T>(keys(g), BR - g * L, sh.d, kx.p + g * L * kx.rs, kx.rs, kx.cs, w.qt + g * L, BR,
                  st + g * L * (BR + 1), BR, false);
    const V ninf = X::set1(-infinity<T>());
    const V lane = X::lane_indices();
    // On the diagonal, the queries of vector g before key j of chunk g are masked (-inf) first.
    if (diag)
      for (int64_t g = 0; g < nchunk; ++g)
        for (int64_t j = g * L, je = j + keys(g); j < je; ++j)
          st_(st, j, static_cast<int>(g), select_lanes(lane < T(j - g * L), ninf, ld(st, j, static_cast<int>(g))));
    for (int h0 = 0; h0 < NCH; h0 += HG) {
      // Chunks that meet this group (the diagonal's chunk g meets vectors g and up); chunk g starts
      // at the group's vector lo(g).
      const int64_t gend = diag ? std::min<int64_t>(nchunk, h0 + HG) : 1;
      auto lo = [&](int64_t g) { return diag ? std::max(0, static_cast<int>(g) - h0) : 0; };
      // The running max per query lane, down the key rows.
      V mx[HG], base[HG], alpha[HG], sum[HG];
      for (int u = 0; u < HG; ++u) mx[u] = ld(w.m, 0, h0 + u);
      for (int64_t g = 0; g < gend; ++g)
        by_first<HG>(lo(g), [&](auto first) { max_rows<first()>(st, g * L, g * L + keys(g), h0, mx); });
      // The reference the probabilities are taken against (w.m) moves to the new max only where that
      // is more than kSlack above it: p = exp(s - reference) stays below e^kSlack, and the sums and
      // Oᵀ, which share the reference, need no rescaling, so most blocks skip that pass.
      bool moved = false;
      for (int u = 0; u < HG; ++u) {
        const V old = ld(w.m, 0, h0 + u);
        const V ref = select_lanes(mx[u] > old + kSlack, mx[u], old);
        base[u] = select_lanes(ref == ninf, X::zero(), ref);  // nothing visible yet: the row stays all zero
        alpha[u] = select_lanes(ref == old, X::set1(T(1)), softmax_exp(old - base[u]));
        moved = moved || any_lane(ref != old);
        st_(w.m, 0, h0 + u, ref);
        sum[u] = X::zero();
      }
      for (int64_t g = 0; g < gend; ++g)
        by_first<HG>(lo(g), [&](auto first) { exp_rows<first()>(st, g * L, g * L + keys(g), h0, base, sum); });
      for (int u = 0; u < HG; ++u) st_(w.l, 0, h0 + u, ld(w.l, 0, h0 + u) * alpha[u] + sum[u]);
      if (moved)
        for (int64_t c = 0; c < sh.dv; ++c)
          for (int u = 0; u < HG; ++u) st_(w.ot, c, h0 + u, ld(w.ot, c, h0 + u) * alpha[u]);
    }
    for (int64_t g = 0; g < nchunk; ++g)  // O^T += V^T P^T
      products<T>(sh.dv, BR - g * L, keys(g), vx.p + g * L * vx.rs, vx.cs, vx.rs, st + g * L * (BR + 1), BR,
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
    const bool k_copied = k.cs != 1 && k.rs != 1, v_copied = v.cs != 1 && v.rs != 1;
    Buffer<T> kcopy(k_copied ? BC * sh.d : 1), vcopy(v_copied ? BC * sh.dv : 1);
    for (int64_t kb = 0; kb < kbe; ++kb) {
      const int64_t j0 = kb * BC, nc = std::min(BC, sh.sk - j0);
      const KeyBlock kx = key_block(k, kb0, j0, nc, sh.d, kcopy.p), vx = key_block(v, vb0, j0, nc, sh.dv, vcopy.p);
      for (int64_t i = 0; i < nq; ++i)
        if (kb < rows[i].kbe) step(rows[i], kb, kx, vx, st.p);
    }
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
  using V = typename Vec<T>::V;
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
    using V = typename Vec<T>::V;
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
      pack_transposed(kt.p, dp, kp.p, dp, 1, 0, BC);
      pack_transposed(vt.p, sh.dv, v.at(i1b, i2b), v.rs, v.cs, j0, nc);
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
        auto cols = [&](int64_t g) { return diag ? (g + 1) * L : BC; };                       // keys query chunk g sees
        for (int64_t g = 0; g < nchunk; ++g) {
          const int64_t r0 = diag ? g * L : 0;
          products<T>(rows(g), cols(g), sh.d, qsb + r0 * dp, dp, 1, kt.p, BC, p.p + r0 * BC, BC, false);      // S
          products<T>(rows(g), cols(g), sh.dv, dob + r0 * dvp, dvp, 1, vt.p, BC, ds.p + r0 * BC, BC, false);  // dP
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
            const V x = Vec<T>::loadu(pr + c), g = Vec<T>::loadu(dsr + c);
            const V pc = lane + T(c) < T(lim) ? softmax_exp(x - lse_r) : V{};
            Vec<T>::storeu(pr + c, pc);
            Vec<T>::storeu(dsr + c, pc * (g - dl));
          }
        }
        const int64_t nkc = diag ? (std::min(nc, nr) + L - 1) / L : 1;  // key chunks seen by some row
        for (int64_t h = 0; h < nkc; ++h) {
          const int64_t c0 = diag ? h * L : 0, kc = diag ? L : BC;  // keys c0 .. c0 + kc, rows c0 .. nr
          products<T>(kc, dvp, nr - c0, p.p + c0 * BC + c0, 1, BC, dob + c0 * dvp, dvp, dva.p + c0 * dvp, dvp,
                      true);  // dV += Pᵀ dO
          products<T>(kc, dp, nr - c0, ds.p + c0 * BC + c0, 1, BC, qsb + c0 * dp, dp, dka.p + c0 * dp, dp,
                      true);  // dK += dSᵀ (scale Q)
        }
        for (int64_t g = 0; g < nchunk; ++g) {
          const int64_t r0 = diag ? g * L : 0;
          // dQ += dS K
          products<T>(rows(g), dp, cols(g), ds.p + r0 * BC, BC, 1, kp.p, dp, dqa.p + (i0 + r0) * dp, dp, true);
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

#define KILN_ATTENTION_ABI(T, suffix)                                                                                 \
  void attention_fwd_##suffix(const int64_t* shape, int causal, T scale, const T* q, const int64_t* qst, const T* k,  \
                              const int64_t* kst, const T* v, const int64_t* vst, T* out, const int64_t* ost, T* lse, \
                              const int64_t* lst) {                                                                   \
    Forward<T> f{Shape{shape[0], shape[1], shape[2], shape[3], shape[4], shape[5], causal != 0},                      \
                 {q, qst[0], qst[1], qst[2], qst[3]},                                                                 \
                 {k, kst[0], kst[1], kst[2], kst[3]},                                                                 \
                 {v, vst[0], vst[1], vst[2], vst[3]},                                                                 \
                 {out, ost[0], ost[1], ost[2], ost[3]},                                                               \
                 {lse, lst[0], lst[1], lst[2], 0},                                                                    \
                 scale};                                                                                              \
    if (f.sh.sq == 0 || f.sh.b1 == 0 || f.sh.b2 == 0) return;                                                         \
    const int64_t nb = f.sh.b1 * f.sh.b2;                                                                             \
    kiln_rt::attn::run_tasks(nb * f.groups(), &f, Forward<T>::run);                                                   \
  }                                                                                                                   \
  void attention_bwd_##suffix(const int64_t* shape, int causal, T scale, const T* dout, const int64_t* gst,           \
                              const T* q, const int64_t* qst, const T* k, const int64_t* kst, const T* v,             \
                              const int64_t* vst, const T* out, const int64_t* ost, const T* lse, const int64_t* lst, \
                              T* dq, const int64_t* dqst, T* dk, const int64_t* dkst, T* dv, const int64_t* dvst) {   \
    Backward<T> b{Shape{shape[0], shape[1], shape[2], shape[3], shape[4], shape[5], causal != 0},                     \
                  {dout, gst[0], gst[1], gst[2], gst[3]},                                                             \
                  {q, qst[0], qst[1], qst[2], qst[3]},                                                                \
                  {k, kst[0], kst[1], kst[2], kst[3]},                                                                \
                  {v, vst[0], vst[1], vst[2], vst[3]},                                                                \
                  {out, ost[0], ost[1], ost[2], ost[3]},                                                              \
                  {lse, lst[0], lst[1], lst[2], 0},                                                                   \
                  {dq, dqst[0], dqst[1], dqst[2], dqst[3]},                                                           \
                  {dk, dkst[0], dkst[1], dkst[2], dkst[3]},                                                           \
                  {dv, dvst[0], dvst[1], dvst[2], dvst[3]},                                                           \
                  scale};                                                                                             \
    if (b.sh.b1 == 0 || b.sh.b2 == 0) return;                                                                         \
    kiln_rt::attn::run_tasks(b.sh.b1 * b.sh.b2, &b, Backward<T>::run);                                                \
  }

namespace kiln_rt::kernels {
KILN_ATTENTION_ABI(float, f32)
KILN_ATTENTION_ABI(double, f64)
}  // namespace kiln_rt::kernels
