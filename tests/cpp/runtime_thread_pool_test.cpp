// runtime_thread_pool_test.cpp — kiln_parallel_for: coverage, chunking, nesting, concurrency, fork.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "kiln/runtime/kiln_runtime.h"

namespace {

// Restores the thread count a test changed.
struct ThreadCountGuard {
  int saved = kiln_get_num_threads();
  ~ThreadCountGuard() { kiln_set_num_threads(saved); }
};

struct Coverage {
  int64_t begin;
  std::vector<std::atomic<int>> hits;
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> chunks;
  std::set<std::thread::id> threads;
  Coverage(int64_t b, int64_t e) : begin(b), hits(static_cast<size_t>(e - b)) {}
};

void record(void* ctx, int64_t b, int64_t e) {
  auto* c = static_cast<Coverage*>(ctx);
  for (int64_t i = b; i < e; ++i) c->hits[static_cast<size_t>(i - c->begin)].fetch_add(1);
  std::lock_guard<std::mutex> lock(c->mu);
  c->chunks.emplace_back(b, e);
  c->threads.insert(std::this_thread::get_id());
}

// Runs one parallel_for and checks every index ran exactly once in at most `threads` chunks of at
// least `grain` each.
void check_cover(int64_t begin, int64_t end, int64_t grain, int threads) {
  kiln_set_num_threads(threads);
  Coverage c(begin, end);
  kiln_parallel_for(begin, end, grain, record, &c);
  for (size_t i = 0; i < c.hits.size(); ++i)
    ASSERT_EQ(c.hits[i].load(), 1) << "index " << begin + int64_t(i) << " of [" << begin << "," << end << ") grain "
                                   << grain << " threads " << threads;
  if (end <= begin) {
    EXPECT_TRUE(c.chunks.empty());
    return;
  }
  EXPECT_LE(c.chunks.size(), size_t(std::max(threads, 1)));
  if (c.chunks.size() > 1) {
    for (auto [b, e] : c.chunks) EXPECT_GE(e - b, std::max<int64_t>(grain, 1));
  }
  if (end - begin < 2 * std::max<int64_t>(grain, 1)) {
    EXPECT_EQ(c.chunks.size(), 1u);
  }
}

TEST(RuntimeThreadPool, CoversEveryIndexOnce) {
  ThreadCountGuard guard;
  for (int threads : {1, 2, 3, 4, 7})
    for (int64_t n : {0, 1, 2, 3, 5, 16, 17, 100, 1001})
      for (int64_t grain : {0, 1, 2, 7, 64}) {
        check_cover(0, n, grain, threads);
        check_cover(-13, -13 + n, grain, threads);
      }
}

TEST(RuntimeThreadPool, UsesWorkersAndSplitsStatically) {
  ThreadCountGuard guard;
  kiln_set_num_threads(2);
  Coverage c(0, 1000);
  kiln_parallel_for(0, 1000, 1, record, &c);
  ASSERT_EQ(c.chunks.size(), 2u);
  EXPECT_EQ(c.threads.size(), 2u);  // the caller took one chunk, a worker the other
  std::sort(c.chunks.begin(), c.chunks.end());
  using Chunk = std::pair<int64_t, int64_t>;
  EXPECT_EQ(c.chunks[0], Chunk(0, 500));
  EXPECT_EQ(c.chunks[1], Chunk(500, 1000));
}

TEST(RuntimeThreadPool, SmallRangesRunInlineOnTheCaller) {
  ThreadCountGuard guard;
  kiln_set_num_threads(4);
  Coverage c(0, 9);
  kiln_parallel_for(0, 9, 5, record, &c);  // 9 < 2 * 5
  ASSERT_EQ(c.chunks.size(), 1u);
  EXPECT_EQ(*c.threads.begin(), std::this_thread::get_id());
}

TEST(RuntimeThreadPool, NumThreadsSetting) {
  ThreadCountGuard guard;
  kiln_set_num_threads(3);
  EXPECT_EQ(kiln_get_num_threads(), 3);
  kiln_set_num_threads(0);
  const int hw = kiln_get_num_threads();
  EXPECT_GE(hw, 1);
  kiln_set_num_threads(-5);
  EXPECT_EQ(kiln_get_num_threads(), hw);
}

struct Nested {
  std::atomic<int64_t> sum{0};
  std::atomic<int> inner_chunks_off_thread{0};
};

void nested_inner(void* ctx, int64_t b, int64_t e) {
  auto* n = static_cast<Nested*>(ctx);
  for (int64_t i = b; i < e; ++i) n->sum.fetch_add(i);
}

void nested_outer(void* ctx, int64_t b, int64_t e) {
  auto* n = static_cast<Nested*>(ctx);
  const auto me = std::this_thread::get_id();
  for (int64_t i = b; i < e; ++i) {
    // The inner call must run inline on this thread (no nested parallelism, no deadlock).
    struct Probe {
      Nested* n;
      std::thread::id id;
    } probe{n, me};
    kiln_parallel_for(
        0, 1000, 1,
        [](void* p, int64_t ib, int64_t ie) {
          auto* pr = static_cast<Probe*>(p);
          if (std::this_thread::get_id() != pr->id) pr->n->inner_chunks_off_thread.fetch_add(1);
          nested_inner(pr->n, ib, ie);
        },
        &probe);
  }
}

TEST(RuntimeThreadPool, NestedCallsRunInline) {
  ThreadCountGuard guard;
  kiln_set_num_threads(2);
  Nested n;
  kiln_parallel_for(0, 8, 1, nested_outer, &n);
  EXPECT_EQ(n.sum.load(), 8 * (999 * 1000 / 2));
  EXPECT_EQ(n.inner_chunks_off_thread.load(), 0);
}

TEST(RuntimeThreadPool, ManyDispatchesWithAndWithoutSleeping) {
  ThreadCountGuard guard;
  kiln_set_num_threads(2);
  // Back-to-back calls find the worker spinning; calls after a pause find it asleep on the futex.
  for (int round = 0; round < 2000; ++round) {
    Coverage c(0, 64);
    kiln_parallel_for(0, 64, 1, record, &c);
    for (auto& h : c.hits) ASSERT_EQ(h.load(), 1);
    if (round % 200 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

TEST(RuntimeThreadPool, ConcurrentCallersAreAllServed) {
  ThreadCountGuard guard;
  kiln_set_num_threads(2);
  std::atomic<int> failures{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&failures] {
      for (int round = 0; round < 300; ++round) {
        Coverage c(0, 257);
        kiln_parallel_for(0, 257, 3, record, &c);
        for (auto& h : c.hits)
          if (h.load() != 1) failures.fetch_add(1);
      }
    });
  for (auto& t : callers) t.join();
  EXPECT_EQ(failures.load(), 0);
}

// In a forked child the parent's workers are gone; the pool must rebuild itself instead of
// waiting forever on them.
TEST(RuntimeThreadPool, WorksInForkedChild) {
  ThreadCountGuard guard;
  kiln_set_num_threads(2);
  Coverage warm(0, 100);
  kiln_parallel_for(0, 100, 1, record, &warm);  // the parent's pool exists and has a worker
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(10);  // a deadlock kills the child instead of hanging the test
    for (int round = 0; round < 50; ++round) {
      Coverage c(0, 1000);
      kiln_parallel_for(0, 1000, 1, record, &c);
      for (auto& h : c.hits)
        if (h.load() != 1) _exit(2);
      if (c.chunks.size() != 2 || c.threads.size() != 2) _exit(3);
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child killed by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  // The parent's pool still works after the fork.
  Coverage after(0, 100);
  kiln_parallel_for(0, 100, 1, record, &after);
  for (auto& h : after.hits) EXPECT_EQ(h.load(), 1);
}

}  // namespace
