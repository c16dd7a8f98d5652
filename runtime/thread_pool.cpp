// Job protocol (all fields of a job are written under mutex_):
//  1. run() publishes fn_/ctx_/n_tasks_, opens the job, bumps generation_
//     and wakes the workers; then the caller itself claims tasks.
//  2. A worker that sees a new generation joins under mutex_ (active_++) if
//     the job is still open, claims tasks from next_task_ until none are
//     left, and leaves (active_--).
//  3. Once the caller finds no task left it closes the job and waits only
//     for the workers that joined. A worker that was not scheduled in time
//     (oversubscribed or shared cores) never holds the job up, and no
//     worker can touch a job's fields after run() has returned.
#include "runtime/thread_pool.h"

#include <algorithm>

namespace llm {

namespace {

// Iterations of the short busy-wait before blocking. Back-to-back jobs (one
// per matmul) usually arrive within microseconds, so a brief spin saves the
// futex round trip; it stays short because cores may be shared.
constexpr int kSpinIterations = 2000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

int online_cores() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  n_threads_ = n_threads > 0 ? n_threads : online_cores();
  shares_ = std::make_unique<Share[]>(static_cast<size_t>(n_threads_));
  workers_.reserve(static_cast<size_t>(n_threads_ - 1));
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back(&ThreadPool::worker, this, i);
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);  // also ends a worker's spin
  }
  wake_.notify_all();
  for (auto &t : workers_) t.join();
}

void ThreadPool::run(int64_t n_tasks, TaskFn fn, void *ctx) {
  if (n_tasks <= 0) return;
  // Serialise even the inline case: task bodies may rely on `thread` naming
  // a scratch region that no other running task uses.
  std::lock_guard<std::mutex> job_lock(job_mutex_);
  run_locked(n_tasks, fn, ctx);
}

struct ThreadPool::RangeJob {
  RangeFn fn;
  void *ctx;
  int64_t n, grain;
  int n_shares;
  Share *shares;

  void chunk(int64_t c, int thread) const { fn(ctx, c * grain, std::min(n, (c + 1) * grain), thread); }
};

namespace {

constexpr uint64_t kLow32 = 0xffffffffu;

// Takes the first (front) or the last chunk left in a share; -1 if none is.
int64_t take_chunk(std::atomic<uint64_t> &chunks, bool front) {
  uint64_t v = chunks.load(std::memory_order_relaxed);
  for (;;) {
    const uint64_t f = v & kLow32, b = v >> 32;
    if (f >= b) return -1;
    const uint64_t next = front ? v + 1 : f | (b - 1) << 32;
    if (chunks.compare_exchange_weak(v, next, std::memory_order_relaxed)) return static_cast<int64_t>(front ? f : b - 1);
  }
}

}  // namespace

// Task `share` of a range job: that share from its front, then what is left
// of the others from their backs.
void ThreadPool::range_task(void *ctx, int64_t share, int thread) {
  const RangeJob &j = *static_cast<const RangeJob *>(ctx);
  for (int64_t c; (c = take_chunk(j.shares[share].chunks, true)) >= 0;) j.chunk(c, thread);
  for (int k = 1; k < j.n_shares; ++k) {
    Share &other = j.shares[(share + k) % j.n_shares];
    for (int64_t c; (c = take_chunk(other.chunks, false)) >= 0;) j.chunk(c, thread);
  }
}

void ThreadPool::run_ranges(int64_t n, int64_t grain, RangeFn fn, void *ctx) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  // Chunk indices must fit the 32-bit halves of a share.
  constexpr int64_t kMaxChunks = int64_t{1} << 31;
  if ((n + grain - 1) / grain > kMaxChunks) grain = (n + kMaxChunks - 1) / kMaxChunks;
  const int64_t n_chunks = (n + grain - 1) / grain;
  RangeJob job{fn, ctx, n, grain, static_cast<int>(std::min<int64_t>(n_threads_, n_chunks)), shares_.get()};
  std::lock_guard<std::mutex> job_lock(job_mutex_);
  if (job.n_shares == 1) {
    for (int64_t c = 0; c < n_chunks; ++c) job.chunk(c, 0);
    return;
  }
  for (int s = 0; s < job.n_shares; ++s) {
    const auto front = static_cast<uint64_t>(n_chunks * s / job.n_shares);
    const auto back = static_cast<uint64_t>(n_chunks * (s + 1) / job.n_shares);
    shares_[static_cast<size_t>(s)].chunks.store(front | back << 32, std::memory_order_relaxed);
  }
  run_locked(job.n_shares, range_task, &job);
}

void ThreadPool::run_locked(int64_t n_tasks, TaskFn fn, void *ctx) {
  if (n_threads_ == 1 || n_tasks == 1) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(ctx, t, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = fn;
    ctx_ = ctx;
    n_tasks_ = n_tasks;
    next_task_.store(0, std::memory_order_relaxed);
    open_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  work_on_current_job(0);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    open_ = false;  // every task is claimed; late workers need not join
  }
  for (int i = 0; i < kSpinIterations; ++i) {
    if (active_.load(std::memory_order_acquire) == 0) return;
    cpu_relax();
  }
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [this] { return active_.load(std::memory_order_acquire) == 0; });
}

void ThreadPool::work_on_current_job(int thread) {
  const int64_t n = n_tasks_;
  for (;;) {
    const int64_t t = next_task_.fetch_add(1, std::memory_order_relaxed);
    if (t >= n) break;
    fn_(ctx_, t, thread);
  }
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;  // last generation this worker looked at
  for (;;) {
    for (int i = 0; i < kSpinIterations; ++i) {
      if (generation_.load(std::memory_order_relaxed) != seen) break;
      cpu_relax();
    }
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_relaxed) != seen; });
      seen = generation_.load(std::memory_order_relaxed);
      if (stop_.load(std::memory_order_relaxed)) return;
      if (!open_) continue;  // job already fully claimed
      active_.fetch_add(1, std::memory_order_relaxed);
    }
    work_on_current_job(index);
    // The last worker out wakes the caller; taking the lock pairs with the
    // caller's predicate check so that the notification cannot be lost.
    if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.notify_one();
    }
  }
}

}  // namespace llm
