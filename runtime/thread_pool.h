// A persistent pool of worker threads for the CPU backend. Workers are created
// once (with the model) and wait between jobs; running a job allocates
// nothing. The calling thread takes part in every job.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
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
};

}  // namespace llm
