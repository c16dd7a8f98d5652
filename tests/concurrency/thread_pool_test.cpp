// ThreadPool: every task runs exactly once on a valid thread index, jobs are
// serialised across callers, and pools start and stop cleanly.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "runtime/thread_pool.h"

namespace llm {
namespace {

// Records how often each task ran and checks that no two running tasks ever
// share a thread index (which would break per-thread scratch buffers).
struct Tracker {
  explicit Tracker(int64_t n_tasks, int n_threads)
      : counts(static_cast<size_t>(n_tasks)), busy(static_cast<size_t>(n_threads)) {}
  std::vector<std::atomic<int>> counts;
  std::vector<std::atomic<int>> busy;
  std::atomic<int> bad_thread{0};
  std::atomic<int> overlap{0};

  void task(int64_t t, int thread) {
    if (thread < 0 || thread >= static_cast<int>(busy.size())) {
      bad_thread.fetch_add(1);
      return;
    }
    if (busy[static_cast<size_t>(thread)].exchange(1) != 0) overlap.fetch_add(1);
    // A little work so that tasks overlap in time and workers take part.
    volatile int sink = 0;
    for (int i = 0; i < 200; ++i) sink = sink + i;
    counts[static_cast<size_t>(t)].fetch_add(1);
    busy[static_cast<size_t>(thread)].store(0);
  }

  void expect_each_once() const {
    EXPECT_EQ(bad_thread.load(), 0);
    EXPECT_EQ(overlap.load(), 0);
    for (size_t i = 0; i < counts.size(); ++i) ASSERT_EQ(counts[i].load(), 1) << "task " << i;
  }
};

void run_tracked(ThreadPool &pool, Tracker &tr, int64_t n_tasks) {
  pool.run(n_tasks, [](void *ctx, int64_t t, int th) { static_cast<Tracker *>(ctx)->task(t, th); }, &tr);
}

TEST(ThreadPool, SizeCountsCaller) {
  EXPECT_EQ(ThreadPool(1).size(), 1);
  EXPECT_EQ(ThreadPool(3).size(), 3);
  EXPECT_GE(ThreadPool(0).size(), 1);   // online cores
  EXPECT_GE(ThreadPool(-1).size(), 1);
}

TEST(ThreadPool, EveryTaskExactlyOnce) {
  for (int threads : {1, 2, 4, 8}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 3, 7, 8, 9, 100, 1000}) {
      SCOPED_TRACE(testing::Message() << threads << " threads, " << n << " tasks");
      Tracker tr(n, threads);
      run_tracked(pool, tr, n);
      tr.expect_each_once();
    }
  }
}

TEST(ThreadPool, FewerTasksThanThreads) {
  ThreadPool pool(8);
  for (int rep = 0; rep < 200; ++rep) {
    Tracker tr(3, 8);
    run_tracked(pool, tr, 3);
    tr.expect_each_once();
  }
}

TEST(ThreadPool, ManyConsecutiveJobs) {
  for (int threads : {2, 4, 8}) {
    ThreadPool pool(threads);
    std::atomic<int64_t> sum{0};
    int64_t expected = 0;
    for (int job = 0; job < 3000; ++job) {
      const int64_t n = job % 37;
      pool.parallel_for(n, [&](int64_t t, int) { sum.fetch_add(t + 1, std::memory_order_relaxed); });
      expected += n * (n + 1) / 2;
      ASSERT_EQ(sum.load(), expected) << "job " << job;  // run() returned only when all were done
    }
  }
}

TEST(ThreadPool, ConcurrentCallers) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    std::atomic<int> failures{0};
    std::vector<std::thread> callers;
    for (int c = 0; c < 4; ++c) {
      callers.emplace_back([&, c] {
        for (int job = 0; job < 300; ++job) {
          const int64_t n = (job * 7 + c) % 50;
          Tracker tr(n, threads);
          run_tracked(pool, tr, n);
          bool ok = tr.bad_thread.load() == 0 && tr.overlap.load() == 0;
          for (auto &cnt : tr.counts) ok = ok && cnt.load() == 1;
          if (!ok) failures.fetch_add(1);
        }
      });
    }
    for (auto &t : callers) t.join();
    EXPECT_EQ(failures.load(), 0) << threads << " threads";
  }
}

TEST(ThreadPool, ParallelForUsesCallableByReference) {
  ThreadPool pool(4);
  std::vector<int> hits(1000, 0);
  auto body = [&hits](int64_t t, int) { hits[static_cast<size_t>(t)] += 1; };
  pool.parallel_for(1000, body);
  for (int h : hits) ASSERT_EQ(h, 1);
}

TEST(ThreadPool, WorkIsSpreadOverThreads) {
  // Not a guarantee of the API, but with slow tasks several threads should
  // take part; a pool that ran everything on the caller would fail this.
  ThreadPool pool(4);
  std::vector<std::atomic<int>> per_thread(4);
  pool.parallel_for(64, [&](int64_t, int th) {
    per_thread[static_cast<size_t>(th)].fetch_add(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  });
  int used = 0;
  for (auto &p : per_thread) used += p.load() > 0;
  EXPECT_GE(used, 2);
}

TEST(ThreadPool, StartStopRepeatedly) {
  for (int i = 0; i < 50; ++i) {
    auto pool = std::make_unique<ThreadPool>(1 + i % 8);
    if (i % 2) {
      std::atomic<int> n{0};
      pool->parallel_for(10, [&](int64_t, int) { n.fetch_add(1); });
      EXPECT_EQ(n.load(), 10);
    }
    pool.reset();  // destructor must join idle workers promptly
  }
}

}  // namespace
}  // namespace llm
