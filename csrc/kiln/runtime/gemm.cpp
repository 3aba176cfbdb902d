// gemm.cpp — kiln_gemm_f32/f64: strided batched GEMM, GotoBLAS-blocked, parallel over batch x M/N.
//
// Structure (per thread, on its own rectangle of C):
//   for pc (KC of k)             A slivers: row- and column-major A are read in place, others packed
//    for jc (NC cols of B)       pack B[pc, jc] into NR-column slivers    (B block: L2)
//     for ir (MR rows)           this A sliver stays in L1 ...
//      for jr (NR cols)          ... while B slivers stream from L2 through the micro-kernel
// (an outer loop over MC rows bounds the packed A block when A has to be packed). Threads never share
// packed data: each runs whole rectangles (tasks), so a big single GEMM and a big batch of small ones
// both keep every core busy with no barrier inside a call; a thread's next task in the same call
// reuses the B block it already packed. Threads split only M or N, never k, so results do not depend
// on the thread count or on which thread ran what. Float GEMMs may run on AMX instead (gemm_amx.h),
// and a row epilogue (rows_done) runs on each thread's finished rows.
#include "kiln/runtime/kiln_runtime.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <utility>

// Kernels and packers are private to this library: hidden, so calls between them skip the PLT.
#pragma GCC visibility push(hidden)
#include "kiln/runtime/gemm_amx.h"
#include "kiln/runtime/gemm_common.h"
#include "kiln/runtime/gemm_kernels.h"
#include "kiln/runtime/gemm_pack.h"
#include "kiln/runtime/kernels.h"
#pragma GCC visibility pop

namespace kiln_rt::gemm {
namespace {

// Below this many flops per thread, waking another thread costs more than it saves.
constexpr double kMinFlopsPerThread = 1 << 19;
// Below this many flops a GEMM stays on the FMA kernels: splitting operands into planes and
// configuring tiles costs more than AMX saves.
constexpr double kMinAmxFlops = 1 << 20;

// Cache blocking for kernel K, from the target's caches (kiln_get_target): the A sliver (MR x KC)
// takes up to 3/4 of L1 and at most 768 steps, the packed B block (KC x NC) half of L2, the packed A
// block (MC x KC) up to 3 MiB of L3. Fewer, longer k blocks mean fewer passes over C: the 12-row
// kernel at 768 steps instead of 384 ran 1024^3 4% and 1024x4096x1024 6% faster (interleaved, one
// process, AVX-512), the streamed A sliver notwithstanding.
struct Caches {
  int64_t l1, l2, l3;
  int l1_sets, l1_ways;
  static const Caches& get() {
    static const Caches c = [] {
      const kiln_target* t = kiln_get_target();
      const int ways = std::max(t->l1d_ways, 2);
      return Caches{t->l1d_bytes, t->l2_bytes, t->l3_bytes,
                    static_cast<int>(std::max<int64_t>(1, t->l1d_bytes / (64 * ways))), ways};
    }();
    return c;
  }
};

template <class K, typename T>
struct Blocking {
  int64_t KC, NC, MC;
  static const Blocking& get() {
    static const Blocking b = [] {
      const Caches& c = Caches::get();
      const int64_t kc = std::clamp<int64_t>((c.l1 * 3 / 4 / (K::MR * int64_t(sizeof(T)))) / 8 * 8, 16, 768);
      const int64_t nc = std::max<int64_t>(K::NR, (c.l2 / 2 / (kc * int64_t(sizeof(T)))) / K::NR * K::NR);
      const int64_t a_bytes = std::min<int64_t>(3 << 20, std::max<int64_t>(c.l3 / 2, 256 << 10));
      const int64_t mc = std::max<int64_t>(K::MR, (a_bytes / (kc * int64_t(sizeof(T)))) / K::MR * K::MR);
      return Blocking{kc, nc, mc};
    }();
    return b;
  }
};

// What a thread's packed B buffer holds, so that its next task in the same call skips packing the
// same block again (with an M split every task needs all of B).
struct PackedB {
  uint64_t call = 0;  // 0: nothing valid
  const void* src = nullptr;
  int64_t rs = 0, cs = 0, lanes = 0, kc = 0, width = 0;
  bool operator==(const PackedB&) const = default;
};

template <typename T>
struct ThreadBuffers {
  PackBuffer<T> a, b;
  PackedB b_holds;
};

template <typename T>
ThreadBuffers<T>& thread_buffers() {
  thread_local ThreadBuffers<T> bufs;
  return bufs;
}

// C[0:mr, 0:nr] (any strides) = alpha * tile + beta * C; for outputs with no unit stride.
template <typename T>
void store_tile_strided(const T* tile, int ld, T* c, int64_t rs, int64_t cs, int mr, int nr, T alpha, T beta) {
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) {
      T& dst = c[i * rs + j * cs];
      dst = beta == T(0) ? alpha * tile[i * ld + j] : madd(beta, dst, alpha * tile[i * ld + j]);
    }
}

// Whether a column-major A sliver read in place (kc steps `pitch` bytes apart, one or two lines each)
// spreads over L1's sets thinly enough (at most a third of the ways of any set) to stay cached while
// B streams past. Pitches that are multiples of large powers of two pile every step into a few sets
// and would miss on every reuse; those slivers are packed instead.
inline bool columns_spread_in_l1(int64_t pitch, int64_t kc) {
  const Caches& c = Caches::get();
  constexpr int kLine = 64, kMaxSets = 1024;
  const int sets = std::min(c.l1_sets, kMaxSets), max_per_set = std::max(1, c.l1_ways / 3);
  int used[kMaxSets] = {};
  pitch = pitch < 0 ? -pitch : pitch;
  for (int64_t k = 0; k < kc; ++k)
    if (++used[((k * pitch) / kLine) % sets] > max_per_set) return false;
  return true;
}

template <class K, typename T>
int64_t k_block(int64_t k) {
  const int64_t kc = Blocking<K, T>::get().KC;
  return ceil_div(k, ceil_div(k, kc));  // equal blocks no larger than KC
}

// Whether the kernels read full A slivers straight from A (see gemm_rect). A column-major sliver that
// is used once (n fits one micro-tile) needs no cache residency, so any pitch will do.
template <class K, typename T>
bool a_read_in_place(const Problem<T>& p) {
  // Row-major rows a multiple of 4 KiB apart all fall into the same L1 sets (MR rows of a sliver
  // pile into ~24 sets of 12 ways), so B's stream evicts the sliver between its uses; packed, it is
  // contiguous (measured 10-13% faster at 1024^3 and 2048^3).
  if (p.a_cs == 1) return p.n <= K::NR || (p.a_rs * int64_t(sizeof(T))) % 4096 != 0;
  return p.a_rs == 1 && (p.n <= K::NR || columns_spread_in_l1(p.a_cs * int64_t(sizeof(T)), k_block<K, T>(p.k)));
}

// Where row i of batch element bi's A, column j of its B and element (i, j) of its C are; in a group
// (p.parts > 1), in part i / part or j / part.
template <typename T>
const T* a_row(const Problem<T>& p, int64_t bi, int64_t i) {
  if (p.rows_in_parts) return p.a_parts[i / p.part] + (i % p.part) * p.a_rs;
  return p.a + bi * p.a_bs + i * p.a_rs;
}
template <typename T>
const T* b_column(const Problem<T>& p, int64_t bi, int64_t j) {
  if (p.parts > 1 && !p.rows_in_parts) return p.b_parts[j / p.part] + (j % p.part) * p.b_cs;
  return p.b + bi * p.b_bs + j * p.b_cs;
}
template <typename T>
T* c_at(const Problem<T>& p, int64_t bi, int64_t i, int64_t j) {
  if (p.parts == 1) return p.c + bi * p.c_bs + i * p.c_rs + j * p.c_cs;
  if (p.rows_in_parts) return p.c_parts[i / p.part] + (i % p.part) * p.c_rs + j * p.c_cs;
  return p.c_parts[j / p.part] + (j % p.part) * p.c_cs + i * p.c_rs;
}

// Packs A's rows [i0, i0 + mc) at k block [pc, pc + kc) as MR-row slivers into dst, one run of rows
// per part they span.
template <class K, typename T>
void pack_a_block(const Problem<T>& p, int64_t bi, int64_t i0, int64_t mc, int64_t pc, int64_t kc, T* dst) {
  for (int64_t i = i0; i < i0 + mc;) {
    const int64_t run = p.rows_in_parts ? std::min(i0 + mc - i, p.part - i % p.part) : i0 + mc - i;
    pack_panel<T, K::MR>(a_row(p, bi, i) + pc * p.a_cs, p.a_rs, p.a_cs, run, kc, dst + (i - i0) * kc);
    i += run;
  }
}

// Packs B's columns [j0, j0 + nc) at k block [pc, pc + kc) as NR-column slivers into dst, one run of
// columns per part they span (parts hold whole slivers).
template <class K, typename T>
void pack_b_block(const Problem<T>& p, int64_t bi, int64_t j0, int64_t nc, int64_t pc, int64_t kc, T* dst) {
  for (int64_t j = j0; j < j0 + nc;) {
    const int64_t run = p.parts > 1 && !p.rows_in_parts ? std::min(j0 + nc - j, p.part - j % p.part) : j0 + nc - j;
    pack_panel<T, K::NR>(b_column(p, bi, j) + pc * p.b_rs, p.b_cs, p.b_rs, run, kc, dst + (j - j0) * kc);
    j += run;
  }
}

// Columns of the packed B block at k block kc for a rectangle `cols` wide: half of L2, or all of them
// up to 3/4 of L2 when the rectangle spans all of B's columns (an M split: each thread then packs B
// once per call and reuses it for all its tasks).
template <class K, typename T>
int64_t b_block_columns(int64_t kc, int64_t cols, bool all_columns) {
  constexpr int64_t NR = K::NR;
  const int64_t bytes_per_column = kc * int64_t(sizeof(T)), l2 = Caches::get().l2;
  if (all_columns && round_up(cols, NR) * bytes_per_column <= l2 * 3 / 4) return round_up(cols, NR);
  return std::max<int64_t>(NR, (l2 / 2 / bytes_per_column) / NR * NR);
}

// One batch element's rectangle C[m0:m1, n0:n1], computed by the calling thread alone with kernel K.
template <class K, typename T>
void gemm_rect(const Problem<T>& p, int64_t bi, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const Blocking<K, T>& blk = Blocking<K, T>::get();
  constexpr int MR = K::MR, NR = K::NR;
  const int64_t M = m1 - m0, N = n1 - n0, Kd = p.k;

  // Split each dimension into equal blocks no larger than the cache limit (no runt last block).
  const int64_t kc_blk = k_block<K, T>(Kd);
  // The packed B block's width follows this call's k block (not the largest one).
  const int64_t nc_cap = b_block_columns<K, T>(kc_blk, N, n0 == 0 && n1 == p.n);
  const int64_t nc_blk = round_up(ceil_div(N, ceil_div(N, nc_cap)), NR);
  // A is only ever broadcast, so its two common layouts are read in place, full slivers straight
  // from A: row-major A as row panels (A(i, k) at i * a_rs + k), column-major A interleaved (at
  // k * a_cs + i). Packing would merely copy them, and streaming A from memory inside the kernel
  // overlaps that traffic with the FMAs (measured up to 1.4x faster for n = 64, never slower, even for
  // row pitches that are multiples of 4 KiB). The partial last sliver of those, and every sliver of
  // any other layout, is packed into a zero-padded buffer: row panels of pitch lda_p, or interleaved
  // (pitch MR).
  const bool a_in_place = a_read_in_place<K>(p);
  const bool a_rows = p.a_cs == 1 && a_in_place;
  const int64_t lda_p = a_rows ? round_up(kc_blk, 16) + 16 : MR;
  const int64_t a_sliver = a_rows ? MR * lda_p : MR * kc_blk;
  const int64_t lda_in_place = a_rows ? p.a_rs : p.a_cs;
  // Row panels in place get software prefetch on first use (measured 2-7% faster), except when the
  // rows are a multiple of 4 KiB apart (then read in place only for a single use, see
  // a_read_in_place): all MR rows share L1 sets, and prefetching ahead evicts what the kernel needs.
  const bool a_prefetch = a_rows && (p.a_rs * int64_t(sizeof(T))) % 4096 != 0;
  // Blocking M only bounds the packed A block; A read in place needs none, and one M block packs B
  // exactly once.
  const int64_t mc_blk = a_in_place ? round_up(M, MR) : round_up(ceil_div(M, ceil_div(M, blk.MC)), MR);
  ThreadBuffers<T>& bufs = thread_buffers<T>();
  T* Ap = bufs.a.get((a_in_place ? 1 : ceil_div(std::min(mc_blk, M), MR)) * a_sliver);
  const size_t b_capacity = bufs.b.capacity();
  T* Bp = bufs.b.get(std::min(nc_blk, round_up(N, NR)) * kc_blk);
  if (bufs.b.capacity() != b_capacity) bufs.b_holds = PackedB{};  // a new buffer holds nothing
  if (!Ap || !Bp) {
    // The ABI has no status to return, and a silently wrong product is worse than stopping.
    std::fputs("kiln runtime: out of memory for GEMM packing buffers\n", stderr);
    std::abort();
  }
  const bool direct = p.c_cs == 1;
  alignas(64) T tile[MR * NR];
  auto kernel = [&](int64_t kc, const T* a, int64_t ld, const T* b, T* c, int64_t rs, int mr, int nr, T alpha, T beta,
                    bool a_first) {
    if (a_rows)
      K::template run<true>(kc, a, ld, b, NR, c, rs, mr, nr, alpha, beta, a_first);
    else
      K::template run<false>(kc, a, ld, b, NR, c, rs, mr, nr, alpha, beta, a_first);
  };

  for (int64_t ic = m0; ic < m1; ic += mc_blk) {
    const int64_t mc = std::min(mc_blk, m1 - ic);
    for (int64_t pc = 0; pc < Kd; pc += kc_blk) {
      const int64_t kc = std::min(kc_blk, Kd - pc);
      if (!a_in_place) {
        pack_a_block<K>(p, bi, ic, mc, pc, kc, Ap);
      } else if (mc % MR != 0) {  // only the partial last sliver
        const T* src = a_row(p, bi, ic + mc / MR * MR) + pc * p.a_cs;
        if (a_rows)
          pack_rows<T, MR>(src, p.a_rs, static_cast<int>(mc % MR), kc, Ap, lda_p);
        else
          pack_sliver<T, MR>(src, p.a_rs, p.a_cs, static_cast<int>(mc % MR), kc, Ap);
      }
      const T beta = pc == 0 ? p.beta : T(1);  // later k blocks accumulate onto the first
      for (int64_t jc = n0; jc < n1; jc += nc_blk) {
        const int64_t nc = std::min(nc_blk, n1 - jc);
        const T* b_src = b_column(p, bi, jc) + pc * p.b_rs;  // names the block: no other starts there
        const PackedB wanted{p.call, b_src, p.b_rs, p.b_cs, nc, kc, NR};
        if (!(p.call != 0 && bufs.b_holds == wanted)) {
          pack_b_block<K>(p, bi, jc, nc, pc, kc, Bp);
          bufs.b_holds = wanted;
        }
        for (int64_t ir = 0; ir < mc; ir += MR) {
          const int mr = static_cast<int>(std::min<int64_t>(MR, mc - ir));
          const bool in_place = a_in_place && mr == MR;
          const T* a_sl = in_place     ? a_row(p, bi, ic + ir) + pc * p.a_cs
                          : a_in_place ? Ap
                                       : Ap + ir * kc;  // pack_panel's sliver pitch: MR * kc
          const int64_t ld = in_place ? lda_in_place : lda_p;
          for (int64_t jr = 0; jr < nc; jr += NR) {
            const int nr = static_cast<int>(std::min<int64_t>(NR, nc - jr));
            T* cp = c_at(p, bi, ic + ir, jc + jr);
            if (direct) {
              kernel(kc, a_sl, ld, Bp + jr * kc, cp, p.c_rs, mr, nr, p.alpha, beta, a_prefetch && jr == 0);
            } else {
              kernel(kc, a_sl, ld, Bp + jr * kc, tile, NR, MR, NR, T(1), T(0), a_prefetch && jr == 0);
              store_tile_strided(tile, NR, cp, p.c_rs, p.c_cs, mr, nr, p.alpha, beta);
            }
          }
        }
      }
    }
  }
}

// The parallel split. Each batch element's C is cut along M (units of MR rows) or N (units of NR
// columns). Dynamic: tasks of `per_task` units, claimed from a shared counter, so a thread that starts
// late (woken from sleep) or runs slowly (its core shared with other work) simply takes fewer.
// Static (per_task == 0), when tasks would be too coarse to balance that way: thread t of nthreads
// takes units [t*total/nthreads, (t+1)*total/nthreads) of all batch*units. Either way every C element
// is computed whole by one thread, so results do not depend on the schedule.
template <typename T>
struct Split {
  const Problem<T>* p;
  bool split_n;
  int64_t unit, units, nthreads;
  int64_t per_task = 0, tasks = 0;
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};  // a rectangle could not be computed (AMX: see gemm_amx.h)
  bool report_rows = false;         // call p->rows_done after each rectangle (it holds whole rows)
};

// Runs units [u0, u1) of the linearised batch x units space.
template <class Path, typename T>
void run_units(Split<T>& s, int64_t u0, int64_t u1) {
  const Problem<T>& p = *s.p;
  while (u0 < u1 && !s.failed.load(std::memory_order_relaxed)) {
    const int64_t bi = u0 / s.units, lo = u0 % s.units;
    const int64_t hi = std::min(s.units, lo + (u1 - u0));
    const bool ok = s.split_n ? Path::rect(p, bi, 0, p.m, lo * s.unit, std::min(p.n, hi * s.unit))
                              : Path::rect(p, bi, lo * s.unit, std::min(p.m, hi * s.unit), 0, p.n);
    if (!ok) s.failed.store(true, std::memory_order_relaxed);
    // Those rows are final (an M split, or one thread doing whole rows): their epilogue runs now,
    // on this thread, while they are in its cache.
    if (ok && s.report_rows) {
      const int64_t r0 = s.split_n ? 0 : lo * s.unit, r1 = s.split_n ? p.m : std::min(p.m, hi * s.unit);
      p.rows_done(p.rows_ctx, bi * p.m + r0, bi * p.m + r1);
    }
    u0 += hi - lo;
  }
}

template <class Path, typename T>
void run_threads(void* ctx, int64_t begin, int64_t end) {
  Split<T>& s = *static_cast<Split<T>*>(ctx);
  if (s.per_task > 0) {
    const int64_t tasks_per_batch = s.units / s.per_task;
    for (;;) {
      const int64_t t = s.next.fetch_add(1, std::memory_order_relaxed);
      if (t >= s.tasks) return;
      const int64_t u0 = (t / tasks_per_batch) * s.units + (t % tasks_per_batch) * s.per_task;
      run_units<Path>(s, u0, u0 + s.per_task);
    }
  }
  const int64_t total = s.p->batch * s.units;
  for (int64_t t = begin; t < end; ++t) run_units<Path>(s, t * total / s.nthreads, (t + 1) * total / s.nthreads);
}

// Picks equal tasks for the dynamic schedule: about `per_thread` per thread, none smaller than
// min_units, and a count that divides evenly among the threads (or is large enough not to matter), so
// a quiet machine loses nothing against the static split. Leaves per_task == 0 when no such tasks exist.
template <typename T>
void plan_tasks(Split<T>& s, int64_t min_units, int64_t per_thread) {
  const int64_t batch = s.p->batch, n = s.nthreads;
  const int64_t most = std::max<int64_t>(1, s.units / min_units);  // a whole batch element is always fine
  for (int64_t per_batch = std::min(ceil_div(per_thread * n, batch), most); per_batch >= 1; --per_batch) {
    const int64_t per = ceil_div(s.units, per_batch);
    if (s.units % per != 0) continue;
    const int64_t tasks = batch * (s.units / per);
    if (tasks < 2 * n) return;
    if (tasks % n != 0 && tasks < 32 * n) continue;
    s.per_task = per;
    s.tasks = tasks;
    return;
  }
}

// The FMA kernels as a path for the parallel driver (the AMX one is amx::Path).
template <class K>
struct FmaPath {
  static constexpr int MR = K::MR, NR = K::NR;
  // Smallest task: 8 column tiles keep A's re-streaming (once per task) cheap next to the FMAs; 16
  // row slivers amortise re-packing B (once per task).
  static constexpr int64_t kMinTaskColumnTiles = 8, kMinTaskRowSlivers = 16;
  template <typename T>
  static bool a_in_place(const Problem<T>& p) {
    return a_read_in_place<K>(p);
  }
  // Whether all of B is one packed block (one k block, one column block; see gemm_rect): a thread's
  // later tasks of an M split then reuse it, and small tasks cost no re-packing.
  template <typename T>
  static bool b_packed_once(const Problem<T>& p) {
    const int64_t kc = k_block<K, T>(p.k);
    return kc >= p.k && round_up(p.n, NR) <= b_block_columns<K, T>(kc, p.n, true);
  }
  template <typename T>
  static bool rect(const Problem<T>& p, int64_t bi, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    gemm_rect<K>(p, bi, m0, m1, n0, n1);
    return true;
  }
};

// Runs the whole problem on Path's kernels across the threads; false if a rectangle failed. Reports
// finished rows to p.rows_done when p.rows_inline and the split is along M (`rows_reported`).
template <class Path, typename T>
bool gemm_parallel(const Problem<T>& p, bool* rows_reported = nullptr) {
  const int64_t m_tiles = ceil_div(p.m, Path::MR), n_tiles = ceil_div(p.n, Path::NR);
  // Which dimension threads split decides what each re-packs when they share a batch element: after
  // an M split every thread packs all of B (k x n), after an N split all of A (m x k) unless A is
  // read in place. So split N when A needs no packing and N has a tile per thread, else the larger.
  const int64_t nt = kiln_get_num_threads();
  const bool a_in_place = Path::a_in_place(p);
  // N only when its tiles share out evenly: 3 tiles on 2 threads (N = 192 with 64-wide tiles) leave
  // one thread idle a third of the time, where M's many slivers balance.
  const bool n_even = n_tiles % nt == 0 || n_tiles >= 8 * nt;
  // A row epilogue runs inline only after an M split, on rows still in cache: worth B's packing
  // per thread when that is once per call (SwiGLU after w1 and w3: TransformerLM forward 2.2-7.5%
  // faster, rule toggled per call in one process).
  const bool epilogue_first = p.rows_inline && p.rows_done && m_tiles >= 4 * nt && Path::b_packed_once(p);
  const bool split_n = !epilogue_first && (a_in_place ? n_tiles >= nt && p.n >= p.m / 8 && n_even : n_tiles > m_tiles);
  Split<T> s{&p, split_n, split_n ? Path::NR : Path::MR, split_n ? n_tiles : m_tiles, 1};
  const double flops = 2.0 * p.batch * p.m * p.n * p.k;
  const int64_t by_work = static_cast<int64_t>(std::min(flops / kMinFlopsPerThread, 1e9));
  s.nthreads = std::max<int64_t>(1, std::min({nt, p.batch * s.units, by_work}));
  // Rows go to the epilogue from here only when every thread of the pool takes part: a GEMM too
  // small for more threads would otherwise leave its epilogue on fewer threads than it deserves.
  s.report_rows = p.rows_inline && p.rows_done && (!split_n || s.nthreads == 1) && s.nthreads == nt;
  if (rows_reported) *rows_reported = s.report_rows;
  if (s.nthreads == 1) {
    run_units<Path>(s, 0, p.batch * s.units);
    return !s.failed;
  }
  // Small tasks where they cost nothing (B packed once per thread): a thread that starts late (woken
  // from sleep after the previous kernel, or sharing its core) leaves the other less to wait for at
  // the end (TransformerLM forward 0.7-7.9% faster, rule toggled per call in one process).
  if (!split_n && Path::b_packed_once(p))
    plan_tasks(s, 4, 16);
  else
    plan_tasks(s, split_n ? Path::kMinTaskColumnTiles : Path::kMinTaskRowSlivers, 4);
  kiln_parallel_for(0, s.nthreads, 1, run_threads<Path, T>, &s);
  return !s.failed;
}

// Whether the AMX path takes p: floats, nothing to accumulate into (beta == 0, batch elements with
// their own C), and enough work per call to pay for splitting the operands into planes.
template <typename T>
bool amx_takes(const Problem<T>& p) {
  if constexpr (!std::is_same_v<T, float>) {
    return false;
  } else {
    return p.bf16_planes > 0 && p.parts == 1 && p.beta == 0.0f && p.m >= 16 && p.n >= 16 && p.k >= 32 &&
           2.0 * p.batch * p.m * p.n * p.k >= kMinAmxFlops && amx::available();
  }
}

// AMX where it takes the problem (falling back to the FMA kernels for inputs its split cannot hold);
// otherwise row-major A read in place takes the row-panel kernel, every other A the interleaved one
// (see RowKernel in gemm_kernels.h). Returns whether rows were reported to p.rows_done.
template <typename T>
bool gemm_parallel(const Problem<T>& p) {
  if constexpr (std::is_same_v<T, float>) {
    // AMX rectangles may be redone on the FMA kernels, so their rows are reported only after.
    Problem<T> q = p;
    q.rows_inline = false;
    if (amx_takes(q) && gemm_parallel<amx::Path>(q)) return false;
  }
  bool reported = false;
  if (p.a_cs == 1 && a_read_in_place<RowKernel<T>>(p))
    gemm_parallel<FmaPath<RowKernel<T>>>(p, &reported);
  else
    gemm_parallel<FmaPath<Kernel<T>>>(p, &reported);
  return reported;
}

// C = beta * C (k == 0: the product is empty).
template <typename T>
void scale_c(const Problem<T>& p) {
  for (int64_t bi = 0; bi < p.batch; ++bi)
    for (int64_t i = 0; i < p.m; ++i) {
      T* row = p.c + bi * p.c_bs + i * p.c_rs;
      for (int64_t j = 0; j < p.n; ++j) row[j * p.c_cs] = p.beta == T(0) ? T(0) : p.beta * row[j * p.c_cs];
    }
}

template <typename T>
bool gemm(Problem<T> p);

// Whether a group's parts can run as one problem: the FMA kernels storing along C's rows, each part
// whole micro-tiles wide. Otherwise each part runs on its own (same results: every C element is
// computed the same way in either case).
template <typename T>
bool group_runs_whole(const Problem<T>& p) {
  if (p.c_cs != 1 || p.m <= 1 || p.n <= 1 || p.k <= 1) return false;
  if constexpr (std::is_same_v<T, float>)
    if (p.bf16_planes > 0 && amx::available()) return false;
  const bool rows = p.a_cs == 1 && a_read_in_place<RowKernel<T>>(p);
  if (p.rows_in_parts) return p.part % (rows ? RowKernel<T>::MR : Kernel<T>::MR) == 0;
  return p.part % (rows ? RowKernel<T>::NR : Kernel<T>::NR) == 0;
}

// Part by part, a row is final when the last part has computed it: only that part reports rows.
template <typename T>
bool gemm_group(Problem<T> p) {
  if (p.parts == 1 || group_runs_whole(p)) return gemm(p);
  bool reported = false;
  for (int64_t i = 0; i < p.parts; ++i) {
    Problem<T> one = p;
    one.parts = 1;
    one.rows_in_parts = false;
    (p.rows_in_parts ? one.m : one.n) = p.part;
    (p.rows_in_parts ? one.a : one.b) = (p.rows_in_parts ? p.a_parts : p.b_parts)[i];
    one.c = p.c_parts[i];
    if (i + 1 < p.parts) one.rows_done = nullptr;
    reported = gemm(one);
  }
  return reported;
}

// Returns whether every row was reported to p.rows_done (see kiln_gemm_f32).
template <typename T>
bool gemm(Problem<T> p) {
  if (p.batch <= 0 || p.m <= 0 || p.n <= 0) return false;
  if (p.k <= 0) {
    if (p.parts > 1) return gemm_group(p);  // scale_c addresses C directly
    scale_c(p);
    return false;
  }
  p.rows_inline = p.rows_done != nullptr;
  static std::atomic<uint64_t> calls{0};
  p.call = calls.fetch_add(1, std::memory_order_relaxed) + 1;
  // A stride along a dimension of size 1 is never used: make it 1 so the unit-stride fast paths apply.
  if (p.n == 1) p.c_cs = 1, p.b_cs = p.b_rs == 1 ? p.b_cs : 1;
  if (p.m == 1) p.c_rs = p.c_cs == 1 ? p.c_rs : 1, p.a_rs = p.a_cs == 1 ? p.a_rs : 1;
  if (p.k == 1) p.a_cs = p.a_rs == 1 ? p.a_cs : 1, p.b_rs = p.b_cs == 1 ? p.b_rs : 1;
  // Column-major C: compute C^T = B^T A^T instead, so the kernels always store along unit stride.
  if (p.c_cs != 1 && p.c_rs == 1) {
    std::swap(p.m, p.n);
    std::swap(p.a, p.b);
    std::swap(p.a_bs, p.b_bs);
    std::swap(p.a_rs, p.b_cs);
    std::swap(p.a_cs, p.b_rs);
    std::swap(p.c_rs, p.c_cs);
    p.rows_inline = false;  // its rows are the caller's columns
  }
  // A batch of A's stacked along rows against one shared B is one taller GEMM.
  if (p.batch > 1 && p.b_bs == 0 && p.a_bs == p.m * p.a_rs && p.c_bs == p.m * p.c_rs) {
    p.m *= p.batch;
    p.batch = 1;
  }
  if (p.batch > 1 && p.c_bs == 0) {
    // Every batch element accumulates into the same C: run them in order, each split across threads.
    Problem<T> one = p;
    one.batch = 1;
    one.rows_inline = false;  // no row is final before the last batch element
    for (int64_t bi = 0; bi < p.batch; ++bi) {
      one.a = p.a + bi * p.a_bs;
      one.b = p.b + bi * p.b_bs;
      gemm_parallel(one);
      one.beta = T(1);
    }
    return false;
  }
  return gemm_parallel(p);
}

}  // namespace
}  // namespace kiln_rt::gemm

namespace kiln_rt::kernels {

int gemm_has_amx(void) { return kiln_rt::gemm::amx::available() ? 1 : 0; }

int gemm_f32(int64_t batch, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t a_bs, int64_t a_rs,
             int64_t a_cs, const float* b, int64_t b_bs, int64_t b_rs, int64_t b_cs, float beta, float* c, int64_t c_bs,
             int64_t c_rs, int64_t c_cs, int bf16_planes, kiln_range_fn rows_done, void* rows_ctx) {
  return kiln_rt::gemm::gemm<float>({batch,
                                     m,
                                     n,
                                     k,
                                     alpha,
                                     beta,
                                     a,
                                     a_bs,
                                     a_rs,
                                     a_cs,
                                     b,
                                     b_bs,
                                     b_rs,
                                     b_cs,
                                     c,
                                     c_bs,
                                     c_rs,
                                     c_cs,
                                     bf16_planes < 0   ? 0
                                     : bf16_planes > 3 ? 3
                                                       : bf16_planes,
                                     rows_done,
                                     rows_ctx})
             ? 1
             : 0;
}

int gemm_group_f32(int64_t parts, int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs,
                   const float* const* b, int64_t b_rs, int64_t b_cs, float* const* c, int64_t c_rs, int64_t c_cs,
                   int bf16_planes, kiln_range_fn rows_done, void* rows_ctx) {
  kiln_rt::gemm::Problem<float> p{1,
                                  m,
                                  parts * n,
                                  k,
                                  1.0f,
                                  0.0f,
                                  a,
                                  0,
                                  a_rs,
                                  a_cs,
                                  b[0],
                                  0,
                                  b_rs,
                                  b_cs,
                                  c[0],
                                  0,
                                  c_rs,
                                  c_cs,
                                  bf16_planes < 0   ? 0
                                  : bf16_planes > 3 ? 3
                                                    : bf16_planes,
                                  rows_done,
                                  rows_ctx};
  p.parts = parts, p.part = n, p.b_parts = b, p.c_parts = c;
  return kiln_rt::gemm::gemm_group(p) ? 1 : 0;
}

void gemm_shared_b_f32(int64_t parts, int64_t m, int64_t n, int64_t k, const float* const* a, int64_t a_rs,
                       int64_t a_cs, const float* b, int64_t b_rs, int64_t b_cs, float* const* c, int64_t c_rs,
                       int64_t c_cs, int bf16_planes) {
  kiln_rt::gemm::Problem<float> p{1,
                                  parts * m,
                                  n,
                                  k,
                                  1.0f,
                                  0.0f,
                                  a[0],
                                  0,
                                  a_rs,
                                  a_cs,
                                  b,
                                  0,
                                  b_rs,
                                  b_cs,
                                  c[0],
                                  0,
                                  c_rs,
                                  c_cs,
                                  bf16_planes < 0   ? 0
                                  : bf16_planes > 3 ? 3
                                                    : bf16_planes,
                                  nullptr,
                                  nullptr};
  p.parts = parts, p.part = m, p.rows_in_parts = parts > 1, p.a_parts = a, p.c_parts = c;
  kiln_rt::gemm::gemm_group(p);
}

void gemm_shared_b_f64(int64_t parts, int64_t m, int64_t n, int64_t k, const double* const* a, int64_t a_rs,
                       int64_t a_cs, const double* b, int64_t b_rs, int64_t b_cs, double* const* c, int64_t c_rs,
                       int64_t c_cs) {
  kiln_rt::gemm::Problem<double> p{1, parts * m, n,    k,    1.0, 0.0,  a[0], 0, a_rs,    a_cs,   b,
                                   0, b_rs,      b_cs, c[0], 0,   c_rs, c_cs, 0, nullptr, nullptr};
  p.parts = parts, p.part = m, p.rows_in_parts = parts > 1, p.a_parts = a, p.c_parts = c;
  kiln_rt::gemm::gemm_group(p);
}

int gemm_group_f64(int64_t parts, int64_t m, int64_t n, int64_t k, const double* a, int64_t a_rs, int64_t a_cs,
                   const double* const* b, int64_t b_rs, int64_t b_cs, double* const* c, int64_t c_rs, int64_t c_cs,
                   kiln_range_fn rows_done, void* rows_ctx) {
  kiln_rt::gemm::Problem<double> p{1, m,    parts * n, k,    1.0, 0.0,  a,    0, a_rs,      a_cs,    b[0],
                                   0, b_rs, b_cs,      c[0], 0,   c_rs, c_cs, 0, rows_done, rows_ctx};
  p.parts = parts, p.part = n, p.b_parts = b, p.c_parts = c;
  return kiln_rt::gemm::gemm_group(p) ? 1 : 0;
}

int gemm_f64(int64_t batch, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t a_bs, int64_t a_rs,
             int64_t a_cs, const double* b, int64_t b_bs, int64_t b_rs, int64_t b_cs, double beta, double* c,
             int64_t c_bs, int64_t c_rs, int64_t c_cs, kiln_range_fn rows_done, void* rows_ctx) {
  return kiln_rt::gemm::gemm<double>({batch, m,    n,    k, alpha, beta, a,    a_bs, a_rs,      a_cs,    b,
                                      b_bs,  b_rs, b_cs, c, c_bs,  c_rs, c_cs, 0,    rows_done, rows_ctx})
             ? 1
             : 0;
}

}  // namespace kiln_rt::kernels
