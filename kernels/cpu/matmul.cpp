// matmul: argument checks, the split into row-block tasks for the thread
// pool, and the portable scalar body. The AVX2 body is in matmul_avx2.cpp.
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "kernels/cpu/kernels_impl.h"
#include "runtime/thread_pool.h"

namespace llm::cpu {

namespace detail {

namespace {

// Scalar body tiling: a block of kRows weight rows is converted kKc columns
// at a time into a stack buffer (4 KiB) and used against every token, so each
// weight is read and converted once per call whatever n is.
constexpr int64_t kScalarRows = 4;
constexpr int64_t kScalarKc = 256;

size_t elem_bytes(DType t) { return t == DType::F32 ? 4 : 2; }

const void *weight_at(const MatmulArgs &a, int64_t row, int64_t col) {
  return static_cast<const char *>(a.W) + (row * a.k + col) * static_cast<int64_t>(elem_bytes(a.wtype));
}

}  // namespace

float dot_scalar(const float *a, const float *b, int64_t n) {
  // Four independent partial sums: shorter dependency chains and a smaller
  // rounding error than one running sum.
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

void matmul_rows_scalar(const MatmulArgs &a, int64_t j0, int64_t j1) {
  float buf[kScalarRows][kScalarKc];
  for (int64_t jb = j0; jb < j1; jb += kScalarRows) {
    const int64_t rows = std::min(kScalarRows, j1 - jb);
    for (int64_t kb = 0; kb < a.k; kb += kScalarKc) {
      const int64_t kc = std::min(kScalarKc, a.k - kb);
      for (int64_t r = 0; r < rows; ++r) convert_row_scalar(weight_at(a, jb + r, kb), a.wtype, kc, buf[r]);
      for (int64_t i = 0; i < a.n; ++i) {
        const float *xi = a.x + i * a.ldx + kb;
        float *oi = a.out + i * a.ldo + jb;
        for (int64_t r = 0; r < rows; ++r) {
          // The first k-tile starts from the bias; later tiles accumulate.
          const float base = kb > 0 ? oi[r] : (a.bias ? a.bias[jb + r] : 0.0f);
          oi[r] = base + dot_scalar(xi, buf[r], kc);
        }
      }
    }
  }
}

}  // namespace detail

namespace {

using RowsFn = void (*)(const detail::MatmulArgs &, int64_t, int64_t);

struct MatmulJob {
  const detail::MatmulArgs *args;
  RowsFn rows_fn;
};

// Rows of W per chunk of ThreadPool::run_ranges (each thread streams its own
// contiguous share of the rows): a multiple of 16 (the AVX2 panel width), at
// most 64 so that several chunks per thread balance the load, and at least
// 16 so that per-chunk overhead stays negligible.
int64_t rows_per_chunk(int64_t m, int threads) {
  const int64_t target = (m + 4 * threads - 1) / (4 * threads);
  return std::clamp<int64_t>((target + 15) / 16 * 16, 16, 64);
}

void fill_bias(int64_t n, const float *bias, int64_t m, float *out, int64_t ldo) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j) out[i * ldo + j] = bias ? bias[j] : 0.0f;
}

}  // namespace

void matmul(ThreadPool &pool, const float *x, int64_t n, int64_t k, int64_t ldx,
            const void *W, DType wtype, int64_t m, const float *bias,
            float *out, int64_t ldo) {
  if (wtype != DType::F32 && wtype != DType::F16 && wtype != DType::BF16) {
    std::fprintf(stderr, "llm: matmul: unsupported weight type %d\n", static_cast<int>(wtype));
    std::abort();
  }
  if (n <= 0 || m <= 0) return;
  if (k <= 0) return fill_bias(n, bias, m, out, ldo);

  const detail::MatmulArgs args{x, n, k, ldx, W, wtype, m, bias, out, ldo};
  RowsFn fn = detail::matmul_rows_scalar;
#if defined(LLM_HAVE_X86)
  if (detail::use_avx2()) fn = detail::matmul_rows_avx2;
#endif
#if defined(LLM_HAVE_NEON)
  if (detail::use_neon()) fn = detail::matmul_rows_neon;
#endif
  const MatmulJob job{&args, fn};
  pool.run_ranges(m, rows_per_chunk(m, pool.size()), [](void *ctx, int64_t j0, int64_t j1, int) {
    const auto &j = *static_cast<const MatmulJob *>(ctx);
    j.rows_fn(*j.args, j0, j1);
  }, const_cast<MatmulJob *>(&job));
}

}  // namespace llm::cpu
