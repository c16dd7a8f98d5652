// Quantized CPU kernels (kernels/cpu/quant.h), for every SIMD path this
// machine supports (forced with set_isa) and thread pools of 1 and 2.
//
// Tolerances, per output (token i, weight row j):
//  * exact reference: the same quantized operands in float64,
//      R_q = bias + sum_b (sum_e (qw - z) qx) * d_b * s_g,
//    whose integer parts every path computes exactly; only the float
//    scaling and summation round:  |out - R_q| <= (nb + 4) * 2^-23 * S with
//    S = |bias| + sum_b |d_b s_g| sum_e (|qw| + |z|) |qx| (nb = blocks per
//    row). S bounds every partial sum whatever way a path splits a block's
//    dot product (the SIMD paths scale sum qw qx and the zero-point term
//    z sum qx separately). Paths therefore agree within twice that.
//  * float reference: dequantized weights times the unquantized float
//    activations in float64; the activation rounding error is at most half
//    a step per element:  |out - R| <= sum_k |w_k| * d_b(k) / 2 * (1 + 1e-5)
//    + 1e-5 * (|bias| + sum_k |w_k x_k|).
//  * results for one ISA are bit-identical for every thread count; the
//    quantized activations (every byte of the scratch) are bit-identical for
//    every ISA and thread count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <random>
#include <vector>

#include "format/error.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/quant_impl.h"
#include "runtime/thread_pool.h"

namespace llm::cpu {
namespace {

// ---- helpers -----------------------------------------------------------------------

// Every path this CPU runs (Scalar first); LLM_TEST_ISA=name limits the
// list to Scalar and that path, and fails if the CPU cannot run it.
std::vector<Isa> supported_isas() {
  const char *only = std::getenv("LLM_TEST_ISA");
  if (only == nullptr || *only == '\0') return available_isas();
  std::vector<Isa> out{Isa::Scalar};
  for (Isa isa : {Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni, Isa::Neon, Isa::NeonDot})
    if (std::strcmp(isa_name(isa), only) == 0) {
      EXPECT_TRUE(isa_supported(isa)) << "LLM_TEST_ISA=" << only << ": this CPU cannot run it";
      out.push_back(isa);
    }
  EXPECT_EQ(out.size(), 2u) << "LLM_TEST_ISA=" << only << ": unknown path";
  return out;
}

class IsaScope {
 public:
  explicit IsaScope(Isa isa) {
    set_isa(isa);
    EXPECT_EQ(active_isa(), isa);
  }
  ~IsaScope() { set_isa(Isa::Auto); }
};

// A 64-byte aligned byte buffer (quantize_acts requires the alignment).
class Aligned {
 public:
  explicit Aligned(size_t bytes) : raw_(bytes + 64, 0xA5) {
    const auto addr = reinterpret_cast<uintptr_t>(raw_.data());
    ptr_ = raw_.data() + (64 - addr % 64) % 64;
  }
  unsigned char *data() { return ptr_; }

 private:
  std::vector<unsigned char> raw_;
  unsigned char *ptr_;
};

enum class Zeros { Symmetric, Asymmetric };

// A quantized weight matrix plus its logical values, for references.
struct TestWeight {
  DType dtype;
  int64_t rows, cols, group;
  std::vector<uint8_t> q;           // packed, as the kernels read it
  std::vector<uint16_t> scales;     // f16
  std::vector<uint8_t> zeros;       // empty when symmetric
  std::vector<int32_t> qv;          // logical q, [rows][cols]
  std::vector<int32_t> zv;          // logical z per [rows][groups]
  std::vector<double> value;        // (q - z) * s, [rows][cols]

  QuantWeight view() const {
    QuantWeight w;
    w.dtype = dtype;
    w.rows = rows;
    w.cols = cols;
    w.group = group;
    w.q = q.data();
    w.scales = scales.data();
    w.zeros = zeros.empty() ? nullptr : zeros.data();
    return w;
  }
  int64_t groups() const { return cols / group; }
};

// Random weights. Values and zero points hit both ends of their ranges: the
// first group of every row has the lowest zero point, the second the highest.
TestWeight make_weight(std::mt19937 &rng, DType dtype, Zeros zeros, int64_t rows, int64_t cols, int64_t group) {
  TestWeight w{dtype, rows, cols, group, {}, {}, {}, {}, {}, {}};
  const bool i8 = dtype == DType::I8;
  const int qlo = i8 ? -128 : 0, qhi = i8 ? 127 : 15;
  std::uniform_int_distribution<int> qd(qlo, qhi);
  std::uniform_real_distribution<float> sd(0.002f, 0.05f);
  const int64_t groups = cols / group;
  w.qv.resize(static_cast<size_t>(rows * cols));
  for (size_t e = 0; e < w.qv.size(); ++e) w.qv[e] = e % 97 == 0 ? qlo : e % 89 == 0 ? qhi : qd(rng);
  w.scales.resize(static_cast<size_t>(rows * groups));
  for (size_t g = 0; g < w.scales.size(); ++g) w.scales[g] = f32_to_f16(g % 7 == 3 ? -sd(rng) : sd(rng));
  w.zv.assign(static_cast<size_t>(rows * groups), i8 ? 0 : 8);
  if (zeros == Zeros::Asymmetric) {
    w.zeros.resize(w.zv.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g = 0; g < groups; ++g) {
        const int z = g == 0 ? qlo : g == 1 ? qhi : qd(rng);
        w.zv[r * groups + g] = z;
        w.zeros[r * groups + g] = static_cast<uint8_t>(z);
      }
  }
  if (i8) {
    for (int32_t v : w.qv) w.q.push_back(static_cast<uint8_t>(v));
  } else {
    // Blocks of 32 elements in 16 bytes: element e in the low nibble of byte
    // e % 16 for e < 16, in the high nibble for e >= 16.
    w.q.assign(static_cast<size_t>(rows * cols / 2), 0);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const size_t byte = static_cast<size_t>(r * cols / 2 + c / 32 * 16 + c % 16);
        const int v = w.qv[r * cols + c];
        w.q[byte] = static_cast<uint8_t>(w.q[byte] | (c % 32 < 16 ? v : v << 4));
      }
  }
  w.value.resize(w.qv.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t g = r * groups + c / group;
      w.value[r * cols + c] = static_cast<double>(w.qv[r * cols + c] - w.zv[g]) * f16_to_f32(w.scales[g]);
    }
  return w;
}

// Activations with blocks of very different magnitudes, one block of zeros
// and one of values too small to quantize (both must give d = 0, no NaN).
std::vector<float> make_acts(std::mt19937 &rng, int64_t n, int64_t k, int64_t ldx) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n * ldx), 777.0f);  // padding: must be ignored
  const int64_t nb = k / 32;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t kind = (i * 7 + b * 3) % 11;
      const float scale = kind == 0 ? 0.0f : kind == 1 ? 1e-36f : kind == 2 ? 300.0f : kind == 3 ? 1e-3f : 1.0f;
      for (int64_t e = 0; e < 32; ++e) x[i * ldx + b * 32 + e] = scale * u(rng);
    }
  return x;
}

// The quantized activations, read back through the documented meaning.
struct QuantActs {
  std::vector<int8_t> q;      // [n][k]
  std::vector<float> d;       // [n][nb]
  std::vector<int32_t> sum;   // [n][nb]
};

struct Scratch {
  Aligned buf;
  size_t bytes;
  Scratch(int64_t n, int64_t k) : buf(quantized_acts_bytes(n, k)), bytes(quantized_acts_bytes(n, k)) {}
};

// Reads q, d and sum back through the internal scratch layout
// (kernels/cpu/quant_impl.h).
QuantActs read_acts(const void *scratch, int64_t n, int64_t k) {
  const detail::ActsLayout l(n, k);
  const auto *base = static_cast<const unsigned char *>(scratch);
  QuantActs a;
  a.q.resize(static_cast<size_t>(n * k));
  a.d.resize(static_cast<size_t>(n * l.nb));
  a.sum.resize(static_cast<size_t>(n * l.nb));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t b = 0; b < l.nb; ++b)
      for (int64_t e = 0; e < 32; ++e) {
        const int64_t at = i * l.q_row + detail::act_unit_offset(b, e / 4 * 4) + e % 4;
        a.q[i * k + b * 32 + e] = static_cast<int8_t>(base[at]);
      }
  std::memcpy(a.d.data(), base + l.d_offset, a.d.size() * 4);
  std::memcpy(a.sum.data(), base + l.sum_offset, a.sum.size() * 4);
  return a;
}

QuantActs quantize(ThreadPool &pool, Isa isa, const std::vector<float> &x, int64_t n, int64_t k, int64_t ldx,
                   Scratch &s) {
  IsaScope scope(isa);
  quantize_acts(pool, x.data(), n, k, ldx, s.buf.data());
  return read_acts(s.buf.data(), n, k);
}

// ---- quantize_acts ------------------------------------------------------------------------

void check_acts_properties(const QuantActs &a, const std::vector<float> &x, int64_t n, int64_t k, int64_t ldx) {
  const int64_t nb = k / 32;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t b = 0; b < nb; ++b) {
      float amax = 0;
      for (int64_t e = 0; e < 32; ++e) amax = std::max(amax, std::fabs(x[i * ldx + b * 32 + e]));
      const float d = a.d[i * nb + b];
      // Blocks too small to quantize are zeroed: their error is the value.
      const double slack = amax < 1e-30f ? amax : 0.0;
      int32_t sum = 0, qmax = 0;
      for (int64_t e = 0; e < 32; ++e) {
        const int32_t q = a.q[i * k + b * 32 + e];
        sum += q;
        qmax = std::max(qmax, std::abs(q));
        const double err = std::fabs(static_cast<double>(q) * d - x[i * ldx + b * 32 + e]);
        ASSERT_LE(err, 0.5 * d * (1 + 1e-5) + slack) << "i=" << i << " b=" << b << " e=" << e;
      }
      ASSERT_EQ(a.sum[i * nb + b], sum);
      if (amax < 1e-30f) {
        ASSERT_EQ(d, 0.0f);
        ASSERT_EQ(qmax, 0);
      } else {
        ASSERT_EQ(d, amax / 127.0f);
        ASSERT_EQ(qmax, 127);
      }
    }
}

TEST(QuantizeActs, PropertiesAndPathsAgree) {
  std::mt19937 rng(7);
  ThreadPool pool1(1), pool2(2);
  for (int64_t k : {32, 64, 96, 384, 1056, 20000 - 20000 % 32})
    for (int64_t n : {1, 2, 5, 16, 33}) {
      SCOPED_TRACE(testing::Message() << "n=" << n << " k=" << k);
      const int64_t ldx = k + (n % 2) * 5;
      const auto x = make_acts(rng, n, k, ldx);
      Scratch s(n, k);
      const QuantActs ref = quantize(pool1, Isa::Scalar, x, n, k, ldx, s);
      check_acts_properties(ref, x, n, k, ldx);
      if (HasFatalFailure()) return;
      // Every byte of the scratch (all regions, including the derived
      // per-block values the SIMD kernels read) is identical.
      for (Isa isa : supported_isas())
        for (ThreadPool *pool : {&pool1, &pool2}) {
          SCOPED_TRACE(testing::Message() << isa_name(isa) << " threads=" << pool->size());
          Scratch s2(n, k);
          quantize(*pool, isa, x, n, k, ldx, s2);
          ASSERT_EQ(std::memcmp(s2.buf.data(), s.buf.data(), s.bytes), 0);
        }
    }
}

TEST(QuantizeActs, RoundsHalfToEvenAndSaturates) {
  ThreadPool pool(1);
  // max |x| = 127 gives d = 1: values are rounded to nearest, ties to even.
  std::vector<float> x(32, 0.0f);
  const float in[] = {127.0f, -127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 0.49f, 126.5f, -126.51f};
  std::copy(std::begin(in), std::end(in), x.begin());
  const int8_t want[] = {127, -127, 0, 2, 2, 0, -2, 0, 126, -127};
  for (Isa isa : supported_isas()) {
    Scratch s(1, 32);
    const QuantActs a = quantize(pool, isa, x, 1, 32, 32, s);
    EXPECT_EQ(a.d[0], 1.0f) << isa_name(isa);
    for (size_t e = 0; e < std::size(want); ++e) EXPECT_EQ(a.q[e], want[e]) << isa_name(isa) << " e=" << e;
  }
}

TEST(QuantizeActs, SizesAndArguments) {
  EXPECT_EQ(quantized_acts_bytes(0, 64), 0u);
  for (int64_t n : {1, 3, 100})
    for (int64_t k : {32, 96, 2048}) {
      const size_t bytes = quantized_acts_bytes(n, k);
      EXPECT_GE(bytes, static_cast<size_t>(n * k + 8 * n * (k / 32)));
      EXPECT_EQ(bytes % 64, 0u);
    }
  ThreadPool pool(2);
  Aligned buf(4096);
  std::vector<float> x(64, 1.0f);
  const auto status = [&](auto &&f) {
    try {
      f();
    } catch (const Error &e) {
      return e.status();
    }
    return LLM_OK;
  };
  EXPECT_EQ(status([] { quantized_acts_bytes(1, 48); }), LLM_ERR_INTERNAL);
  EXPECT_EQ(status([] { quantized_acts_bytes(-1, 32); }), LLM_ERR_INTERNAL);
  EXPECT_EQ(status([&] { quantize_acts(pool, x.data(), 1, 33, 33, buf.data()); }), LLM_ERR_INTERNAL);
  EXPECT_EQ(status([&] { quantize_acts(pool, x.data(), 2, 32, 16, buf.data()); }), LLM_ERR_INTERNAL);
  EXPECT_EQ(status([&] { quantize_acts(pool, x.data(), 1, 32, 32, buf.data() + 4); }), LLM_ERR_INTERNAL);
  EXPECT_EQ(status([&] { quantize_acts(pool, nullptr, 1, 32, 32, buf.data()); }), LLM_ERR_INTERNAL);
  EXPECT_EQ(status([&] { quantize_acts(pool, x.data(), 0, 32, 32, nullptr); }), LLM_OK);  // nothing to do
}

// ---- matmul_q -----------------------------------------------------------------------------

struct Case {
  DType dtype;
  Zeros zeros;
  int64_t rows, cols, group, n;
  bool bias;
};

const float kSentinel = 12345.0f;

struct References {
  std::vector<double> exact, exact_tol, real, real_tol;  // [n][rows]
};

References references(const Case &c, const TestWeight &w, const QuantActs &a, const std::vector<float> &x,
                      int64_t ldx, const std::vector<float> &bias) {
  const int64_t nb = c.cols / 32, groups = c.cols / c.group;
  References r;
  const size_t outs = static_cast<size_t>(c.n * c.rows);
  r.exact.resize(outs);
  r.exact_tol.resize(outs);
  r.real.resize(outs);
  r.real_tol.resize(outs);
  for (int64_t i = 0; i < c.n; ++i)
    for (int64_t j = 0; j < c.rows; ++j) {
      const double b0 = c.bias ? bias[j] : 0.0;
      double exact = b0, mag_q = std::fabs(b0), real = b0, mag = std::fabs(b0), qerr = 0;
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t g = j * groups + b * 32 / c.group;
        int64_t idot = 0, iabs = 0;
        for (int64_t e = b * 32; e < b * 32 + 32; ++e) {
          const int64_t qx = a.q[i * c.cols + e];
          idot += (w.qv[j * c.cols + e] - w.zv[g]) * qx;
          iabs += (std::abs(w.qv[j * c.cols + e]) + std::abs(w.zv[g])) * std::abs(qx);
          const double wv = w.value[j * c.cols + e], xv = x[i * ldx + e];
          real += wv * xv;
          mag += std::fabs(wv * xv);
          qerr += std::fabs(wv) * a.d[i * nb + b] * 0.5;
        }
        const double scale = static_cast<double>(a.d[i * nb + b]) * f16_to_f32(w.scales[g]);
        exact += static_cast<double>(idot) * scale;
        mag_q += static_cast<double>(iabs) * std::fabs(scale);
      }
      const size_t o = static_cast<size_t>(i * c.rows + j);
      r.exact[o] = exact;
      r.exact_tol[o] = static_cast<double>(nb + 4) * std::ldexp(1.0, -23) * mag_q + 1e-30;
      r.real[o] = real;
      r.real_tol[o] = qerr * (1 + 1e-5) + 1e-5 * mag + 1e-30;
    }
  return r;
}

// with_work: with the work area a session gives matmul_q (Aligned fills it
// with 0xA5: nothing may depend on its contents before use).
std::vector<float> run_matmul(ThreadPool &pool, Isa isa, const Scratch &s, const Case &c, const TestWeight &w,
                              const std::vector<float> &bias, int64_t ldo, bool with_work = false) {
  IsaScope scope(isa);
  std::vector<float> out(static_cast<size_t>(c.n * ldo), kSentinel);
  const size_t work_bytes = with_work ? matmul_q_work_bytes(pool.size(), c.n) : 0;
  Aligned work(std::max<size_t>(work_bytes, 1));
  matmul_q(pool, const_cast<Scratch &>(s).buf.data(), c.n, w.view(), c.bias ? bias.data() : nullptr, out.data(),
           ldo, work_bytes ? work.data() : nullptr);
  return out;
}

void check_case(ThreadPool &pool1, ThreadPool &pool2, const Case &c, std::mt19937 &rng) {
  SCOPED_TRACE(testing::Message() << dtype_name(c.dtype) << (c.zeros == Zeros::Asymmetric ? " asym" : " sym")
                                  << " rows=" << c.rows << " cols=" << c.cols << " group=" << c.group
                                  << " n=" << c.n << " bias=" << c.bias);
  const int64_t ldx = c.cols + 3, ldo = c.rows + (c.n > 1 ? 2 : 0);
  const auto x = make_acts(rng, c.n, c.cols, ldx);
  std::uniform_real_distribution<float> bd(-2.0f, 2.0f);
  std::vector<float> bias(static_cast<size_t>(c.rows));
  for (auto &b : bias) b = bd(rng);
  const TestWeight w = make_weight(rng, c.dtype, c.zeros, c.rows, c.cols, c.group);

  Scratch s(c.n, c.cols);
  const QuantActs a = quantize(pool1, Isa::Scalar, x, c.n, c.cols, ldx, s);
  const References ref = references(c, w, a, x, ldx, bias);

  std::vector<float> first;
  for (Isa isa : supported_isas()) {
    SCOPED_TRACE(isa_name(isa));
    const auto out = run_matmul(pool1, isa, s, c, w, bias, ldo);
    for (int64_t i = 0; i < c.n; ++i) {
      for (int64_t j = 0; j < c.rows; ++j) {
        const size_t o = static_cast<size_t>(i * c.rows + j);
        const float v = out[i * ldo + j];
        ASSERT_TRUE(std::isfinite(v)) << "i=" << i << " j=" << j;
        ASSERT_NEAR(v, ref.exact[o], ref.exact_tol[o]) << "vs exact, i=" << i << " j=" << j;
        ASSERT_NEAR(v, ref.real[o], ref.real_tol[o]) << "vs float64, i=" << i << " j=" << j;
        if (!first.empty()) {
          ASSERT_NEAR(v, first[i * ldo + j], 2 * ref.exact_tol[o]) << "paths, i=" << i << " j=" << j;
        }
      }
      for (int64_t j = c.rows; j < ldo; ++j) ASSERT_EQ(out[i * ldo + j], kSentinel) << "padding written";
    }
    // Two threads: bit-identical.
    const auto out2 = run_matmul(pool2, isa, s, c, w, bias, ldo);
    ASSERT_EQ(std::memcmp(out.data(), out2.data(), out.size() * 4), 0) << "thread count changed the result";
    // With the work area (decoded weights reused across token tiles): the
    // same bits, on one thread and on two.
    for (ThreadPool *pool : {&pool1, &pool2}) {
      const auto outw = run_matmul(*pool, isa, s, c, w, bias, ldo, true);
      ASSERT_EQ(std::memcmp(out.data(), outw.data(), out.size() * 4), 0)
          << "the work area changed the result (" << pool->size() << " threads)";
    }
    if (first.empty()) first = out;
  }
}

TEST(MatmulQ, AllShapesAgainstReferences) {
  std::mt19937 rng(2024);
  ThreadPool pool1(1), pool2(2);
  int counter = 0;
  for (DType dtype : {DType::I8, DType::I4})
    for (Zeros zeros : {Zeros::Symmetric, Zeros::Asymmetric})
      for (int64_t cols : {32, 64, 96, 384, 1056})
        for (int64_t group : {32, 64, 128}) {
          if (cols % group != 0) continue;
          for (int64_t rows : {1, 3, 17, 130})
            for (int64_t n : {1, 2, 5, 8, 16, 33}) {  // 8: the batch tile of decoding sessions
              check_case(pool1, pool2, {dtype, zeros, rows, cols, group, n, ++counter % 2 == 0}, rng);
              if (HasFatalFailure()) return;
            }
        }
}

TEST(MatmulQ, PanelsTailsAndOddGroups) {
  // Several k-panels (prefill tiles cut k into panels of ~2.7K elements),
  // a tail block after the last 128-element chunk, group sizes that are
  // neither 32 nor 64 nor a multiple of 128, and row counts around the 4-row
  // decode tiles and the 16..64-row tasks.
  std::mt19937 rng(5);
  ThreadPool pool1(1), pool2(2);
  const Case cases[] = {
      {DType::I4, Zeros::Asymmetric, 70, 5632, 64, 7, true},
      {DType::I8, Zeros::Symmetric, 33, 2976, 96, 13, false},   // 93 blocks: tail of 1
      {DType::I4, Zeros::Symmetric, 65, 2976, 32, 1, true},
      {DType::I8, Zeros::Asymmetric, 5, 480, 160, 6, true},
      {DType::I4, Zeros::Asymmetric, 19, 1024, 256, 12, false},
      {DType::I8, Zeros::Symmetric, 129, 1024, 1024, 2, true},
      {DType::I4, Zeros::Symmetric, 4, 8192, 128, 3, false},
      {DType::I8, Zeros::Asymmetric, 2, 96, 96, 40, true},
      {DType::I4, Zeros::Symmetric, 70, 2976, 32, 20, true},  // prompt tiles over panels and a tail octet
      // Batch tiles (n <= 8 is one token tile): several panels, a tail octet.
      {DType::I4, Zeros::Symmetric, 70, 2976, 32, 8, true},
      {DType::I4, Zeros::Asymmetric, 37, 5632, 128, 8, false},
      {DType::I8, Zeros::Symmetric, 21, 2976, 32, 8, false},
      {DType::I8, Zeros::Asymmetric, 9, 1056, 96, 7, true},
  };
  for (const Case &c : cases) {
    check_case(pool1, pool2, c, rng);
    if (HasFatalFailure()) return;
  }
}

// Largest magnitudes everywhere: int16 intermediate sums at their limits.
TEST(MatmulQ, ExtremeValues) {
  ThreadPool pool(2);
  const int64_t cols = 256, n = 3;
  std::vector<float> x(static_cast<size_t>(n * cols));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < cols; ++c) x[i * cols + c] = i == 0 ? -1.0f : i == 1 ? 1.0f : (c % 2 ? 1.0f : -1.0f);
  Scratch s(n, cols);
  for (DType dtype : {DType::I8, DType::I4})
    for (int qv : {0, 1}) {
      std::mt19937 rng(1);
      TestWeight w = make_weight(rng, dtype, Zeros::Symmetric, 1, cols, 128);
      const int q = dtype == DType::I8 ? (qv ? 127 : -128) : (qv ? 15 : 0);
      std::fill(w.q.begin(), w.q.end(), dtype == DType::I8 ? static_cast<uint8_t>(q) : static_cast<uint8_t>(q * 17));
      std::fill(w.scales.begin(), w.scales.end(), f32_to_f16(1.0f));
      for (Isa isa : supported_isas()) {
        IsaScope scope(isa);
        quantize_acts(pool, x.data(), n, cols, cols, s.buf.data());
        float out[3];
        QuantWeight v = w.view();
        matmul_q(pool, s.buf.data(), n, v, nullptr, out, 1);
        const int z = dtype == DType::I8 ? 0 : 8;
        // Every activation is +-127 with d = 1/127.
        EXPECT_FLOAT_EQ(out[0], -static_cast<float>(cols * (q - z))) << isa_name(isa);
        EXPECT_FLOAT_EQ(out[1], static_cast<float>(cols * (q - z))) << isa_name(isa);
        EXPECT_FLOAT_EQ(out[2], 0.0f) << isa_name(isa);
      }
    }
}

TEST(MatmulQ, Arguments) {
  ThreadPool pool(2);
  Aligned acts(quantized_acts_bytes(2, 64));
  std::mt19937 rng(3);
  const TestWeight w = make_weight(rng, DType::I4, Zeros::Symmetric, 3, 64, 32);
  float out[8] = {};
  const auto status = [&](QuantWeight v, int64_t n = 1, int64_t ldo = 3, void *a = nullptr) {
    try {
      matmul_q(pool, a ? a : acts.data(), n, v, nullptr, out, ldo);
    } catch (const Error &e) {
      return e.status();
    }
    return LLM_OK;
  };
  QuantWeight v = w.view();
  EXPECT_EQ(status(v), LLM_OK);
  v.dtype = DType::F32;
  EXPECT_EQ(status(v), LLM_ERR_INTERNAL);
  v = w.view();
  v.cols = 48;
  EXPECT_EQ(status(v), LLM_ERR_INTERNAL);
  v = w.view();
  v.group = 48;
  EXPECT_EQ(status(v), LLM_ERR_INTERNAL);
  v.group = 128;  // does not divide 64
  EXPECT_EQ(status(v), LLM_ERR_INTERNAL);
  v = w.view();
  v.scales = nullptr;
  EXPECT_EQ(status(v), LLM_ERR_INTERNAL);
  v = w.view();
  EXPECT_EQ(status(v, 2, 2), LLM_ERR_INTERNAL);  // ldo < rows
  EXPECT_EQ(status(v, 1, 3, acts.data() + 8), LLM_ERR_INTERNAL);  // misaligned
  EXPECT_EQ(status(v, -1), LLM_ERR_INTERNAL);
  // Nothing to do: no error, nothing written.
  out[0] = 9;
  EXPECT_EQ(status(v, 0), LLM_OK);
  v.rows = 0;
  EXPECT_EQ(status(v), LLM_OK);
  EXPECT_EQ(out[0], 9);
  // dequantize_row checks its row.
  v = w.view();
  EXPECT_THROW(dequantize_row(v, 3, out), Error);
  EXPECT_THROW(dequantize_row(v, -1, out), Error);
}

// ---- dequantize_row ------------------------------------------------------------------------

TEST(DequantizeRow, MatchesLogicalValues) {
  std::mt19937 rng(11);
  for (DType dtype : {DType::I8, DType::I4})
    for (Zeros zeros : {Zeros::Symmetric, Zeros::Asymmetric})
      for (int64_t group : {32, 64, 96, 128}) {
        const int64_t cols = 384;
        const TestWeight w = make_weight(rng, dtype, zeros, 3, cols, group);
        std::vector<float> out(static_cast<size_t>(cols));
        for (int64_t r = 0; r < 3; ++r) {
          dequantize_row(w.view(), r, out.data());
          for (int64_t c = 0; c < cols; ++c)
            ASSERT_EQ(out[c], static_cast<float>(w.value[r * cols + c]))
                << dtype_name(dtype) << " group=" << group << " r=" << r << " c=" << c;
        }
      }
}

}  // namespace
}  // namespace llm::cpu
