// ThreadPool: every task (and every chunk of a range job) runs exactly once
// on a valid thread index, jobs are serialised across callers, and pools
// start and stop cleanly.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <utility>
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
  // The same, as one answer (for checks made off the test's thread).
  bool each_once() const {
    bool ok = bad_thread.load() == 0 && overlap.load() == 0;
    for (const auto &c : counts) ok = ok && c.load() == 1;
    return ok;
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

// Runs job_ok(caller, job) for `jobs` jobs on each of 4 caller threads at
// once; returns how many returned false.
template <class F>
int failures_of_concurrent_callers(int jobs, F job_ok) {
  std::atomic<int> failures{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&, c] {
      for (int job = 0; job < jobs; ++job)
        if (!job_ok(c, job)) failures.fetch_add(1);
    });
  }
  for (auto &t : callers) t.join();
  return failures.load();
}

TEST(ThreadPool, ConcurrentCallers) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    const int failures = failures_of_concurrent_callers(300, [&](int c, int job) {
      const int64_t n = (job * 7 + c) % 50;
      Tracker tr(n, threads);
      run_tracked(pool, tr, n);
      return tr.each_once();
    });
    EXPECT_EQ(failures, 0) << threads << " threads";
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

// A range job: which chunk each item was given in, how often, on which
// thread; no two running chunks may share a thread index.
struct RangeTracker {
  RangeTracker(int64_t n, int64_t grain, int n_threads)
      : grain(grain), hits(static_cast<size_t>(n)), busy(static_cast<size_t>(n_threads)) {}
  int64_t grain;
  std::vector<std::atomic<int>> hits;
  std::vector<std::atomic<int>> busy;
  std::atomic<int> bad{0};

  void chunk(int64_t begin, int64_t end, int thread) {
    const auto n = static_cast<int64_t>(hits.size());
    // Chunks are [c * grain, min(n, (c + 1) * grain)).
    if (thread < 0 || thread >= static_cast<int>(busy.size()) || begin < 0 || begin >= end || end > n ||
        begin % grain != 0 || end != std::min(n, begin + grain)) {
      bad.fetch_add(1);
      return;
    }
    if (busy[static_cast<size_t>(thread)].exchange(1) != 0) bad.fetch_add(1);
    for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
    busy[static_cast<size_t>(thread)].store(0);
  }
  bool each_once() const {
    if (bad.load() != 0) return false;
    for (const auto &h : hits)
      if (h.load() != 1) return false;
    return true;
  }
};

void run_ranges_tracked(ThreadPool &pool, RangeTracker &tr, int64_t n) {
  pool.run_ranges(n, tr.grain, [](void *ctx, int64_t b, int64_t e, int th) {
    static_cast<RangeTracker *>(ctx)->chunk(b, e, th);
  }, &tr);
}

TEST(ThreadPool, RangesCoverEveryItemOnceInChunks) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 5, 63, 64, 65, 1000, 4097})
      for (int64_t grain : {1, 4, 7, 64, 5000}) {
        SCOPED_TRACE(testing::Message() << threads << " threads, n " << n << ", grain " << grain);
        RangeTracker tr(n, grain, threads);
        run_ranges_tracked(pool, tr, n);
        EXPECT_TRUE(tr.each_once());
      }
  }
}

TEST(ThreadPool, RangesOnOneThreadRunInOrder) {
  ThreadPool pool(1);
  std::vector<int64_t> begins;
  pool.run_ranges(100, 16, [](void *ctx, int64_t b, int64_t, int) {
    static_cast<std::vector<int64_t> *>(ctx)->push_back(b);
  }, &begins);
  EXPECT_EQ(begins, (std::vector<int64_t>{0, 16, 32, 48, 64, 80, 96}));
}

TEST(ThreadPool, RangesTakeOwnShareInOrder) {
  // Two threads, 16 slow chunks: shares are chunks 0-7 and 8-15. Each
  // thread starts at the front of a share and goes on with that share's
  // next chunk (a task job would hand the chunks out in turn: 0, 1, 2, ...
  // alternating between the threads), long before the other thread could
  // finish its own share and take chunks from the back of this one.
  ThreadPool pool(2);
  struct Log {
    std::mutex m;
    std::vector<std::vector<int64_t>> taken{2};
  } log;
  pool.run_ranges(16, 1, [](void *ctx, int64_t b, int64_t, int th) {
    auto &l = *static_cast<Log *>(ctx);
    {
      std::lock_guard<std::mutex> lock(l.m);
      l.taken[static_cast<size_t>(th)].push_back(b);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }, &log);
  size_t total = 0;
  for (const auto &t : log.taken) {
    total += t.size();
    if (t.empty()) continue;
    EXPECT_TRUE(t[0] == 0 || t[0] == 8) << t[0];
    if (t.size() >= 2) EXPECT_EQ(t[1], t[0] + 1);
  }
  EXPECT_EQ(total, 16u);
}

TEST(ThreadPool, RangeAndTaskJobsFromConcurrentCallers) {
  ThreadPool pool(4);
  const int failures = failures_of_concurrent_callers(200, [&](int c, int job) {
    const int64_t n = (job * 13 + c) % 300;
    if ((job + c) % 2) {
      RangeTracker tr(n, 1 + job % 9, 4);
      run_ranges_tracked(pool, tr, n);
      return tr.each_once();
    }
    Tracker tr(n % 50, 4);
    run_tracked(pool, tr, n % 50);
    return tr.each_once();
  });
  EXPECT_EQ(failures, 0);
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
