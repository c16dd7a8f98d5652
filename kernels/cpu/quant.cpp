// Quantized kernels: argument checks, the split into tasks for the thread
// pool, and the portable scalar bodies (also the reference the SIMD paths are
// tested against). The SIMD bodies are in quant_avx2.cpp, quant_avx512*.cpp
// and quant_neon*.cpp.
#include "kernels/cpu/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "format/error.h"
#include "kernels/cpu/quant_impl.h"
#include "runtime/thread_pool.h"

namespace llm::cpu {

namespace detail {

void finish_act_row(int64_t nb, int64_t nb8, const ActRow &row) {
  for (int64_t i = 0; i < nb8; ++i) {
    const int64_t b = i / kOctet * kOctet + kOctetBlock[i % kOctet];
    row.dp[i] = b < nb ? row.d[b] : 0.0f;
    row.dsum[i] = b < nb ? row.d[b] * static_cast<float>(row.sum[b]) : 0.0f;
    // A real block sum is at most 32 * 127 in magnitude; NaN or infinite
    // activations leave garbage there (the results are NaN anyway), which
    // must not overflow.
    row.zsum[i] = b < nb ? -8 * std::clamp(row.sum[b], -32 * 127, 32 * 127) : 0;
  }
}

void quantize_row_scalar(const float *x, int64_t nb, int64_t nb8, const ActRow &row) {
  for (int64_t b = 0; b < nb; ++b, x += kActBlock) {
    float amax = 0.0f;
    for (int64_t e = 0; e < kActBlock; ++e) amax = std::max(amax, std::fabs(x[e]));
    float inv;
    block_scale(amax, &row.d[b], &inv);
    int32_t s = 0;
    for (int64_t e = 0; e < kActBlock; ++e) {
      // lrint rounds to nearest even like the SIMD conversion; |x * inv| <=
      // 127 up to rounding, the clamp only guards against non-finite input.
      const long v = std::clamp(std::lrint(x[e] * inv), -127L, 127L);
      row.q[act_unit_offset(b, e / 4 * 4) + e % 4] = static_cast<int8_t>(v);
      s += static_cast<int32_t>(v);
    }
    row.sum[b] = s;
  }
  for (int64_t b = nb; b < nb8; ++b)
    for (int64_t e = 0; e < kActBlock; e += 4) std::memset(row.q + act_unit_offset(b, e), 0, 4);
  finish_act_row(nb, nb8, row);
}

int32_t block_dot_scalar(const QMatmulArgs &a, int64_t row, int64_t t, int64_t b) {
  int8_t x[kActBlock];  // the block in element order
  const int8_t *xq = a.x.q + t * a.x.q_row;
  for (int64_t e = 0; e < kActBlock; e += 4) std::memcpy(x + e, xq + act_unit_offset(b, e), 4);
  const uint8_t *w = a.q + row * a.row_bytes;
  const int64_t zi = row * a.groups + b * kActBlock / a.group;
  int32_t dot = 0, z = 0;
  if (a.dtype == DType::I8) {
    const auto *wi = reinterpret_cast<const int8_t *>(w) + b * kActBlock;
    for (int64_t e = 0; e < kActBlock; ++e) dot += wi[e] * x[e];
    if (a.zeros) z = static_cast<int8_t>(a.zeros[zi]);
  } else {
    // 16 bytes per block: element e in the low nibble of byte e, element
    // e + 16 in its high nibble.
    const uint8_t *p = w + b * (kActBlock / 2);
    for (int64_t e = 0; e < 16; ++e) dot += (p[e] & 15) * x[e] + (p[e] >> 4) * x[e + 16];
    z = a.zeros ? a.zeros[zi] : 8;
  }
  // sum_e (q_w - z) * q_x = sum_e q_w * q_x - z * sum_e q_x, exact in int32.
  return dot - z * a.x.sum[t * a.x.nb + b];
}

void matmul_q_rows_scalar(const QMatmulArgs &a, int64_t j0, int64_t j1) {
  const int64_t blocks_per_group = a.group / kActBlock;
  for (int64_t j = j0; j < j1; ++j) {
    const uint16_t *scales = a.scales + j * a.groups;
    for (int64_t i = 0; i < a.n; ++i) {
      const float *xd = a.x.d + i * a.x.nb;
      float acc = 0.0f;
      for (int64_t g = 0; g < a.groups; ++g) {
        float gacc = 0.0f;  // the group's blocks share the weight scale
        for (int64_t b = g * blocks_per_group; b < (g + 1) * blocks_per_group; ++b)
          gacc += static_cast<float>(block_dot_scalar(a, j, i, b)) * xd[b];
        acc += gacc * f16_to_f32(scales[g]);
      }
      a.out[i * a.ldo + j] = a.bias ? acc + a.bias[j] : acc;
    }
  }
}

}  // namespace detail

namespace {

using QuantizeFn = void (*)(const float *, int64_t, int64_t, const detail::ActRow &);
using RowsFn = void (*)(const detail::QMatmulArgs &, int64_t, int64_t);

[[noreturn]] void bad_argument(const char *fn, const std::string &what) {
  throw Error(LLM_ERR_INTERNAL, std::string(fn) + ": " + what);
}

std::string str(int64_t v) { return std::to_string(v); }

bool aligned64(const void *p) { return reinterpret_cast<uintptr_t>(p) % 64 == 0; }

void check_act_shape(const char *fn, int64_t n, int64_t k) {
  if (n < 0) bad_argument(fn, "negative token count " + str(n));
  if (k <= 0 || k % kActBlock != 0) bad_argument(fn, "k = " + str(k) + " is not a positive multiple of 32");
}

void check_weight(const char *fn, const QuantWeight &W) {
  if (W.dtype != DType::I8 && W.dtype != DType::I4)
    bad_argument(fn, std::string("unsupported weight type ") + dtype_name(W.dtype));
  if (W.rows < 0) bad_argument(fn, "negative row count " + str(W.rows));
  check_act_shape(fn, 0, W.cols);
  if (W.group <= 0 || W.group % kActBlock != 0 || W.cols % W.group != 0)
    bad_argument(fn, "group " + str(W.group) + " is not a multiple of 32 dividing cols = " + str(W.cols));
  if (W.rows > 0 && (W.q == nullptr || W.scales == nullptr)) bad_argument(fn, "null weights or scales");
}

QuantizeFn pick_quantize() {
#if defined(LLM_HAVE_X86)
  if (detail::use_avx2()) return detail::quantize_row_avx2;  // also on the AVX-512 paths
#endif
#if defined(LLM_HAVE_NEON)
  if (detail::use_neon()) return detail::quantize_row_neon;
#endif
  return detail::quantize_row_scalar;
}

RowsFn pick_rows() {
  switch (active_isa()) {
#if defined(LLM_HAVE_X86)
    case Isa::Avx2: return detail::matmul_q_rows_avx2;
    case Isa::Avx512: return detail::matmul_q_rows_avx512;
    case Isa::Avx512Vnni: return detail::matmul_q_rows_avx512vnni;
#endif
#if defined(LLM_HAVE_NEON)
    case Isa::Neon: return detail::matmul_q_rows_neon;
    case Isa::NeonDot: return detail::matmul_q_rows_neon_dot;
#endif
    default: return detail::matmul_q_rows_scalar;
  }
}

struct QuantizeJob {
  const float *x;
  int64_t ldx, k, rows_per_task, n;
  char *scratch;
  detail::ActsLayout layout;
  QuantizeFn fn;
};

// Floats quantized per task: large enough that waking a worker pays off
// (decode, n = 1, runs inline on the caller), small enough to split prefill.
constexpr int64_t kQuantizeTaskFloats = 16384;

void quantize_task(void *ctx, int64_t task, int) {
  const auto &j = *static_cast<const QuantizeJob *>(ctx);
  const int64_t i0 = task * j.rows_per_task, i1 = std::min(j.n, i0 + j.rows_per_task);
  const detail::ActsLayout &l = j.layout;
  for (int64_t i = i0; i < i1; ++i) {
    const detail::ActRow row{reinterpret_cast<int8_t *>(j.scratch) + i * l.q_row,
                             reinterpret_cast<float *>(j.scratch + l.d_offset) + i * l.nb,
                             reinterpret_cast<int32_t *>(j.scratch + l.sum_offset) + i * l.nb,
                             reinterpret_cast<float *>(j.scratch + l.dp_offset) + i * l.nb8,
                             reinterpret_cast<float *>(j.scratch + l.dsum_offset) + i * l.nb8,
                             reinterpret_cast<int32_t *>(j.scratch + l.zsum_offset) + i * l.nb8};
    j.fn(j.x + i * j.ldx, l.nb, l.nb8, row);
  }
}

struct MatmulQJob {
  const detail::QMatmulArgs *args;
  RowsFn fn;
  uint8_t *work;  // kWideWorkBytes per thread, or nullptr
};

// Weight rows per chunk of ThreadPool::run_ranges (each thread streams its
// own contiguous share of the rows, chunk after chunk): a multiple of 4
// (the register tiles take 1, 2 or 4 rows), about four chunks per thread so
// that a thread done early can take over the end of another's share, at
// most 64 so that a chunk's rows of a k-panel stay in L2 while prefill
// sweeps the tokens over them.
int64_t q_rows_per_chunk(int64_t rows, int threads) {
  const int64_t target = (rows + 4 * threads - 1) / (4 * threads);
  return std::clamp<int64_t>((target + 3) / 4 * 4, 16, 64);
}

void matmul_q_rows(void *ctx, int64_t j0, int64_t j1, int thread) {
  const auto &j = *static_cast<const MatmulQJob *>(ctx);
  if (!j.work) return j.fn(*j.args, j0, j1);
  detail::QMatmulArgs a = *j.args;
  a.work = j.work + static_cast<size_t>(thread) * detail::kWideWorkBytes;
  j.fn(a, j0, j1);
}

}  // namespace

size_t quantized_acts_bytes(int64_t n, int64_t k) {
  check_act_shape("quantized_acts_bytes", n, k);
  return static_cast<size_t>(detail::ActsLayout(n, k).bytes);
}

void quantize_acts(ThreadPool &pool, const float *x, int64_t n, int64_t k, int64_t ldx, void *scratch) {
  const char *fn = "quantize_acts";
  check_act_shape(fn, n, k);
  if (n == 0) return;
  if (x == nullptr || scratch == nullptr) bad_argument(fn, "null input or scratch");
  if (!aligned64(scratch)) bad_argument(fn, "scratch is not 64-byte aligned");
  if (n > 1 && ldx < k) bad_argument(fn, "row stride " + str(ldx) + " < k = " + str(k));

  const int64_t rows_per_task = std::max<int64_t>(1, kQuantizeTaskFloats / k);
  const QuantizeJob job{x, ldx, k, rows_per_task, n, static_cast<char *>(scratch), detail::ActsLayout(n, k),
                        pick_quantize()};
  pool.run((n + rows_per_task - 1) / rows_per_task, quantize_task, const_cast<QuantizeJob *>(&job));
}

size_t matmul_q_work_bytes(int threads, int64_t n) {
#if defined(LLM_HAVE_X86)
  if (n > 8 && threads > 0) return static_cast<size_t>(threads) * detail::kWideWorkBytes;
#else
  (void)threads;
  (void)n;
#endif
  return 0;
}

void matmul_q(ThreadPool &pool, const void *acts, int64_t n, const QuantWeight &W, const float *bias,
              float *out, int64_t ldo, void *work) {
  const char *fn = "matmul_q";
  check_weight(fn, W);
  check_act_shape(fn, n, W.cols);
  if (n == 0 || W.rows == 0) return;
  if (acts == nullptr || out == nullptr) bad_argument(fn, "null activations or output");
  if (!aligned64(acts)) bad_argument(fn, "activations are not 64-byte aligned");
  if (n > 1 && ldo < W.rows) bad_argument(fn, "output stride " + str(ldo) + " < rows = " + str(W.rows));
  if (work && !aligned64(work)) bad_argument(fn, "work area is not 64-byte aligned");
  if (matmul_q_work_bytes(pool.size(), n) == 0) work = nullptr;  // no path uses it

  const detail::ActsLayout layout(n, W.cols);
  const char *base = static_cast<const char *>(acts);
  detail::QMatmulArgs args{};
  args.x.q = reinterpret_cast<const int8_t *>(base);
  args.x.d = reinterpret_cast<const float *>(base + layout.d_offset);
  args.x.sum = reinterpret_cast<const int32_t *>(base + layout.sum_offset);
  args.x.dp = reinterpret_cast<const float *>(base + layout.dp_offset);
  args.x.dsum = reinterpret_cast<const float *>(base + layout.dsum_offset);
  args.x.zsum = reinterpret_cast<const int32_t *>(base + layout.zsum_offset);
  args.x.k = layout.k;
  args.x.nb = layout.nb;
  args.x.nb8 = layout.nb8;
  args.x.q_row = layout.q_row;
  args.n = n;
  args.dtype = W.dtype;
  args.rows = W.rows;
  args.cols = W.cols;
  args.group = W.group;
  args.row_bytes = W.dtype == DType::I8 ? W.cols : W.cols / 2;
  args.groups = W.cols / W.group;
  args.q = static_cast<const uint8_t *>(W.q);
  args.scales = W.scales;
  args.zeros = static_cast<const uint8_t *>(W.zeros);
  args.bias = bias;
  args.out = out;
  args.ldo = ldo;
  const MatmulQJob job{&args, pick_rows(), static_cast<uint8_t *>(work)};
  pool.run_ranges(W.rows, q_rows_per_chunk(W.rows, pool.size()), matmul_q_rows, const_cast<MatmulQJob *>(&job));
}

void dequantize_row(const QuantWeight &W, int64_t row, float *out) {
  check_weight("dequantize_row", W);
  if (row < 0 || row >= W.rows) bad_argument("dequantize_row", "row " + str(row) + " out of range");
  if (out == nullptr) bad_argument("dequantize_row", "null output");
  const int64_t groups = W.cols / W.group;
  const uint16_t *scales = W.scales + row * groups;
  const auto *zeros = static_cast<const uint8_t *>(W.zeros);
  for (int64_t g = 0; g < groups; ++g) {
    const float s = f16_to_f32(scales[g]);
    const int64_t zi = row * groups + g;
    for (int64_t c = g * W.group; c < (g + 1) * W.group; ++c) {
      int32_t q, z;
      if (W.dtype == DType::I8) {
        q = static_cast<const int8_t *>(W.q)[row * W.cols + c];
        z = zeros ? static_cast<int8_t>(zeros[zi]) : 0;
      } else {
        // Block of 32 = 16 bytes; element e of a block sits in byte e % 16,
        // low nibble for e < 16, high nibble otherwise.
        const uint8_t byte = static_cast<const uint8_t *>(W.q)[row * (W.cols / 2) + c / 32 * 16 + c % 16];
        q = c % 32 < 16 ? byte & 15 : byte >> 4;
        z = zeros ? zeros[zi] : 8;
      }
      out[c] = static_cast<float>(q - z) * s;
    }
  }
}

}  // namespace llm::cpu
