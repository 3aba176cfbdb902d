// thread_pool.cpp — kiln's persistent worker pool behind kiln_parallel_for (std::thread, no OpenMP).
//
// One pool per process, created on first use. The caller of kiln_parallel_for runs chunk 0 itself and
// hands chunk i to worker i-1 by bumping that worker's own sequence word, so only the workers a call
// needs are woken. Idle workers spin for a few microseconds (back-to-back kernels of one graph reuse a
// hot worker) and then sleep on a futex, so they never compete with PyTorch's OpenMP pool while eager
// ops run. A forked child abandons the parent's pool (its threads do not exist in the child) and
// lazily builds a fresh one.
#include <dlfcn.h>
#include "kiln/runtime/kiln_runtime.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <pthread.h>
#include <sched.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace {

// How long an idle worker (or a caller waiting for workers) spins before sleeping. Long enough to
// bridge the gap between consecutive kernels of one graph, short enough not to steal a core from an
// eager PyTorch op that runs next.
constexpr int64_t kWorkerSpinNs = 10'000;
constexpr int64_t kCallerSpinNs = 50'000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ---- sleeping on a 32-bit word -------------------------------------------------------------------
// Raw futex on Linux (no waiter bookkeeping of our own beyond a "sleeping" flag that lets the waker
// skip the syscall); C++20 atomic wait elsewhere.
void word_wait(std::atomic<uint32_t>& w, uint32_t old) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&w), FUTEX_WAIT_PRIVATE, old, nullptr, nullptr, 0);
#else
  w.wait(old);
#endif
}

void word_wake(std::atomic<uint32_t>& w) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&w), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
#else
  w.notify_all();
#endif
}

// Spin until pred() holds or spin_ns elapse; returns pred().
template <class Pred>
bool spin_until(Pred pred, int64_t spin_ns) {
  if (pred()) return true;
  const int64_t deadline = now_ns() + spin_ns;
  for (;;) {
    for (int i = 0; i < 16; ++i) {
      cpu_relax();
      if (pred()) return true;
    }
    if (now_ns() > deadline) return pred();
  }
}

// True on pool workers always, and on a caller while it runs its own chunk: a parallel_for from
// there runs inline (no nested parallelism, and no deadlock on the busy pool).
thread_local bool tls_in_parallel = false;

int hardware_threads() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

std::atomic<int> g_num_threads{0};  // 0: not set yet, use hardware_threads()

struct Job {
  kiln_range_fn fn = nullptr;
  void* ctx = nullptr;
  int64_t begin = 0;
  int64_t size = 0;
  int64_t nchunks = 0;
};

// Chunk i of an even static split of [begin, begin + size) into nchunks pieces.
inline void chunk_bounds(const Job& j, int64_t i, int64_t* b, int64_t* e) {
  const int64_t q = j.size / j.nchunks, r = j.size % j.nchunks;
  *b = j.begin + i * q + std::min(i, r);
  *e = *b + q + (i < r ? 1 : 0);
}

struct alignas(64) WorkerSlot {
  std::atomic<uint32_t> seq{0};       // bumped by the caller to hand this worker its chunk
  std::atomic<uint32_t> sleeping{0};  // set while the worker is (about to be) in futex wait
};

class Pool {
 public:
  // Runs job chunk 0 on the calling thread and chunks 1.. on workers; false if the pool is busy with
  // another caller's job (the caller then runs the whole range inline).
  bool run(kiln_range_fn fn, void* ctx, int64_t begin, int64_t size, int64_t nchunks) {
    std::unique_lock<std::mutex> lock(dispatch_mu_, std::try_to_lock);
    if (!lock.owns_lock()) return false;
    nchunks = std::min<int64_t>(nchunks, ensure_workers(nchunks - 1) + 1);
    job_ = Job{fn, ctx, begin, size, nchunks};
    if (nchunks > 1) {
      pending_.store(static_cast<uint32_t>(nchunks - 1), std::memory_order_relaxed);
      for (int64_t w = 0; w + 1 < nchunks; ++w) {
        WorkerSlot& s = *slots_[w];
        s.seq.fetch_add(1, std::memory_order_seq_cst);  // publishes job_ and pending_
        if (s.sleeping.load(std::memory_order_seq_cst)) word_wake(s.seq);
      }
    }
    int64_t b, e;
    chunk_bounds(job_, 0, &b, &e);
    // Even if fn unwinds (a C++ caller's exception), the workers must be done with job_ before the
    // next job may overwrite it.
    struct Finish {
      Pool* pool;
      bool wait;
      ~Finish() {
        tls_in_parallel = false;
        if (wait) pool->wait_workers();
      }
    } finish{this, nchunks > 1};
    tls_in_parallel = true;
    fn(ctx, b, e);
    return true;
  }

 private:
  // Makes sure at least n workers exist; returns how many do (fewer if the OS refuses threads).
  int64_t ensure_workers(int64_t n) {
    while (static_cast<int64_t>(slots_.size()) < n) {
      auto slot = std::make_unique<WorkerSlot>();
      WorkerSlot* raw = slot.get();
      const int64_t index = static_cast<int64_t>(slots_.size());
      try {
        std::thread([this, raw, index] { worker_main(raw, index); }).detach();
      } catch (...) {
        break;
      }
      slots_.push_back(std::move(slot));
    }
    return std::min<int64_t>(n, static_cast<int64_t>(slots_.size()));
  }

  void wait_workers() {
    auto done = [this] { return pending_.load(std::memory_order_acquire) == 0; };
    if (spin_until(done, kCallerSpinNs)) return;
    caller_sleeping_.store(1, std::memory_order_seq_cst);
    for (;;) {
      uint32_t p = pending_.load(std::memory_order_seq_cst);
      if (p == 0) break;
      word_wait(pending_, p);
    }
    caller_sleeping_.store(0, std::memory_order_relaxed);
  }

  void worker_main(WorkerSlot* slot, int64_t index) {
    tls_in_parallel = true;
    uint32_t seen = 0;  // the slot is fresh: seq starts at 0 and only this pool's caller bumps it
    for (;;) {
      auto bumped = [&] { return slot->seq.load(std::memory_order_acquire) != seen; };
      if (!spin_until(bumped, kWorkerSpinNs)) {
        slot->sleeping.store(1, std::memory_order_seq_cst);
        while (slot->seq.load(std::memory_order_seq_cst) == seen) word_wait(slot->seq, seen);
        slot->sleeping.store(0, std::memory_order_relaxed);
      }
      seen = slot->seq.load(std::memory_order_acquire);
      const Job& j = job_;
      int64_t b, e;
      chunk_bounds(j, index + 1, &b, &e);
      j.fn(j.ctx, b, e);
      if (pending_.fetch_sub(1, std::memory_order_seq_cst) == 1 && caller_sleeping_.load(std::memory_order_seq_cst))
        word_wake(pending_);
    }
  }

  std::mutex dispatch_mu_;  // one job at a time; guards job_ and slots_
  Job job_;
  std::vector<std::unique_ptr<WorkerSlot>> slots_;
  alignas(64) std::atomic<uint32_t> pending_{0};  // worker chunks of the current job not yet done
  std::atomic<uint32_t> caller_sleeping_{0};
};

// The pool is created lock-free (a CAS) so a forked child never waits on a mutex some other parent
// thread held at fork time. It is never destroyed: its workers are detached and park in futex wait,
// and process exit reclaims them; destroying it at exit could race a late caller.
std::atomic<Pool*> g_pool{nullptr};

void after_fork_in_child() {
  // The parent's workers do not exist here; the old Pool (mutex state included) is abandoned.
  g_pool.store(nullptr, std::memory_order_relaxed);
  tls_in_parallel = false;
}

Pool* get_pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p) return p;
  static const bool fork_handler_installed = [] {
    pthread_atfork(nullptr, nullptr, after_fork_in_child);
    return true;
  }();
  (void)fork_handler_installed;
  auto* fresh = new Pool();
  if (g_pool.compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) return fresh;
  delete fresh;  // another thread won; ours has no workers yet
  return p;
}

}  // namespace

namespace {

// ---- sharing PyTorch's OpenMP pool ----------------------------------------------------------------
using GompParallelFn = void (*)(void (*)(void*), void*, unsigned, unsigned);
using OmpIntFn = int (*)();
std::atomic<GompParallelFn> g_gomp_parallel{nullptr};
OmpIntFn g_omp_thread_num = nullptr;

struct OmpJob {
  kiln_range_fn fn;
  void* ctx;
  int64_t begin, size, nchunks;
};

void omp_trampoline(void* data) {
  const auto* job = static_cast<const OmpJob*>(data);
  const int64_t t = g_omp_thread_num();
  if (t >= job->nchunks) return;
  const int64_t lo = job->begin + job->size * t / job->nchunks;
  const int64_t hi = job->begin + job->size * (t + 1) / job->nchunks;
  const bool outer = tls_in_parallel;
  tls_in_parallel = true;
  job->fn(job->ctx, lo, hi);
  tls_in_parallel = outer;
}

}  // namespace

extern "C" {

int kiln_share_openmp_pool(const char* libgomp_path) {
  void* h = dlopen(libgomp_path, RTLD_NOW | RTLD_NOLOAD | RTLD_LOCAL);
  if (!h) return 0;
  auto par = reinterpret_cast<GompParallelFn>(dlsym(h, "GOMP_parallel"));
  auto num = reinterpret_cast<OmpIntFn>(dlsym(h, "omp_get_thread_num"));
  if (!par || !num) return 0;
  g_omp_thread_num = num;
  g_gomp_parallel.store(par, std::memory_order_release);
  return 1;
}

void kiln_parallel_for(int64_t begin, int64_t end, int64_t grain, kiln_range_fn fn, void* ctx) {
  if (end <= begin) return;
  if (grain < 1) grain = 1;
  const int64_t size = end - begin;
  const int nthreads = kiln_get_num_threads();
  // size / 2 < grain  <=>  size < 2 * grain, without overflow. The thread-local flag is read last:
  // in a shared library it costs a call, and most small calls end at the first test.
  if (size / 2 < grain || nthreads <= 1 || tls_in_parallel) {
    fn(ctx, begin, end);
    return;
  }
  // At most one chunk per thread, every chunk at least `grain` long.
  const int64_t nchunks = std::min<int64_t>(nthreads, size / grain);
  if (GompParallelFn par = g_gomp_parallel.load(std::memory_order_acquire)) {
    OmpJob job{fn, ctx, begin, size, nchunks};
    par(omp_trampoline, &job, static_cast<unsigned>(nchunks), 0);
    return;
  }
  if (!get_pool()->run(fn, ctx, begin, size, nchunks)) fn(ctx, begin, end);
}

int kiln_get_num_threads(void) {
  int n = g_num_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  n = hardware_threads();
  g_num_threads.store(n, std::memory_order_relaxed);
  return n;
}

void kiln_set_num_threads(int n) { g_num_threads.store(n > 0 ? n : hardware_threads(), std::memory_order_relaxed); }

}  // extern "C"
