// A persistent pool of worker threads for the CPU backend. Workers are created
// once (with the model) and wait between jobs; running a job allocates
// nothing. The calling thread takes part in every job.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace llm {

class ThreadPool {
 public:
  // n_threads counts the caller; 0 or less means the number of online cores.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  int size() const { return n_threads_; }

  // Calls fn(ctx, task, thread) for every task in [0, n_tasks), spreading tasks
  // over the threads (thread in [0, size())); returns when all are done.
  // Jobs from different callers are serialised: one job runs at a time.
  using TaskFn = void (*)(void *ctx, int64_t task, int thread);
  void run(int64_t n_tasks, TaskFn fn, void *ctx);

  // Calls fn(ctx, begin, end, thread) for consecutive chunks of [0, n), each
  // `grain` items long (the last may be shorter), every chunk exactly once.
  // Each thread owns one contiguous share of the chunks and takes them in
  // order from the front, so one thread reads one long run of memory (what
  // the hardware prefetchers follow best); a thread whose share is done
  // takes the remaining chunks of other shares from their back ends.
  using RangeFn = void (*)(void *ctx, int64_t begin, int64_t end, int thread);
  void run_ranges(int64_t n, int64_t grain, RangeFn fn, void *ctx);

  // Convenience wrapper: f(task, thread) for a callable held by reference
  // (no copy, no allocation).
  template <class F>
  void parallel_for(int64_t n_tasks, F &&f) {
    using Fn = std::remove_reference_t<F>;
    run(n_tasks, [](void *c, int64_t t, int th) { (*static_cast<Fn *>(c))(t, th); },
        const_cast<void *>(static_cast<const void *>(&f)));
  }

 private:
  void worker(int index);
  void work_on_current_job(int thread);
  void run_locked(int64_t n_tasks, TaskFn fn, void *ctx);  // job_mutex_ held

  // One share of a run_ranges job: the chunks [front, back) not yet taken,
  // packed as front | back << 32 so that both ends move by one atomic CAS.
  // On its own cache line: the owner updates it for every chunk.
  struct alignas(64) Share {
    std::atomic<uint64_t> chunks{0};
  };
  struct RangeJob;
  static void range_task(void *ctx, int64_t share, int thread);

  int n_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex job_mutex_;        // serialises callers of run()
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  // Written under mutex_; atomic so that workers can spin on them briefly
  // before sleeping on wake_.
  std::atomic<uint64_t> generation_{0};  // incremented per job
  std::atomic<bool> stop_{false};
  TaskFn fn_ = nullptr;
  void *ctx_ = nullptr;
  int64_t n_tasks_ = 0;
  std::atomic<int64_t> next_task_{0};
  bool open_ = false;              // workers may still join the job (under mutex_)
  std::atomic<int> active_{0};     // workers that joined and have not finished
  std::unique_ptr<Share[]> shares_;  // one per thread, for run_ranges
};

}  // namespace llm
