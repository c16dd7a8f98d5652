// CPU kernels against float64 references, for every SIMD path this machine
// supports (forced with set_isa), plus agreement between the paths.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/kv.h"
#include "runtime/thread_pool.h"

namespace llm::cpu {
namespace {

// ---- helpers -----------------------------------------------------------------

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

// Forces an ISA for the scope of a test and restores Auto afterwards.
class IsaScope {
 public:
  explicit IsaScope(Isa isa) {
    set_isa(isa);
    EXPECT_EQ(active_isa(), isa);
  }
  ~IsaScope() { set_isa(Isa::Auto); }
};

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::vector<float> random_floats(std::mt19937 &rng, size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto &x : v) x = d(rng);
  return v;
}

// ---- ISA selection -------------------------------------------------------------

TEST(Isa, SelectionAndNames) {
  EXPECT_TRUE(isa_supported(Isa::Scalar));
  EXPECT_TRUE(isa_supported(Isa::Auto));
  set_isa(Isa::Auto);
  EXPECT_NE(active_isa(), Isa::Auto);
  EXPECT_TRUE(isa_supported(active_isa()));
  const std::vector<Isa> all = available_isas();
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.front(), Isa::Scalar);
  EXPECT_EQ(active_isa(), all.back());  // best path by default
  // Emulated CPUs check the detection: LLM_TEST_EXPECT_BEST=neon under
  // qemu -cpu cortex-a53 (scripts/test_aarch64.sh).
  if (const char *want = std::getenv("LLM_TEST_EXPECT_BEST")) EXPECT_STREQ(isa_name(all.back()), want);
  for (Isa isa : all) {
    set_isa(isa);
    EXPECT_EQ(active_isa(), isa) << isa_name(isa);
  }
  // The extensions imply their base path; paths of the other architecture
  // are never available.
  if (isa_supported(Isa::Avx512Vnni)) EXPECT_TRUE(isa_supported(Isa::Avx512));
  if (isa_supported(Isa::Avx512)) EXPECT_TRUE(isa_supported(Isa::Avx2));
  if (isa_supported(Isa::NeonDot)) EXPECT_TRUE(isa_supported(Isa::Neon));
  EXPECT_FALSE(isa_supported(Isa::Avx2) && isa_supported(Isa::Neon));
#if defined(__aarch64__)
  EXPECT_TRUE(isa_supported(Isa::Neon));  // Advanced SIMD is part of every aarch64 Linux system
#endif
  // An unsupported request falls back to the best path.
  set_isa(isa_supported(Isa::Neon) ? Isa::Avx2 : Isa::Neon);
  EXPECT_EQ(active_isa(), all.back());
  set_isa(Isa::Scalar);
  EXPECT_EQ(active_isa(), Isa::Scalar);
  set_isa(Isa::Auto);
  EXPECT_STREQ(isa_name(Isa::Scalar), "scalar");
  EXPECT_STREQ(isa_name(Isa::Avx2), "avx2");
  EXPECT_STREQ(isa_name(Isa::Avx512), "avx512");
  EXPECT_STREQ(isa_name(Isa::Avx512Vnni), "avx512vnni");
  EXPECT_STREQ(isa_name(Isa::Neon), "neon");
  EXPECT_STREQ(isa_name(Isa::NeonDot), "neon-dotprod");
  EXPECT_STREQ(isa_name(Isa::Auto), "auto");
}

// ---- conversions ---------------------------------------------------------------

// IEEE binary16 decoded with exact double arithmetic.
double f16_reference(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  double v;
  if (exp == 0) {
    v = std::ldexp(mant, -24);
  } else if (exp == 31) {
    v = mant ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  } else {
    v = std::ldexp(1024 + mant, exp - 25);
  }
  return sign ? -v : v;
}

// bfloat16 decoded the same way (8-bit exponent, 7-bit mantissa).
double bf16_reference(uint16_t b) {
  const int sign = b >> 15, exp = (b >> 7) & 0xff, mant = b & 0x7f;
  double v;
  if (exp == 0) {
    v = std::ldexp(mant, -133);
  } else if (exp == 255) {
    v = mant ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  } else {
    v = std::ldexp(128 + mant, exp - 134);
  }
  return sign ? -v : v;
}

TEST(Convert, F16ToF32Exhaustive) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float got = f16_to_f32(static_cast<uint16_t>(h));
    const double ref = f16_reference(static_cast<uint16_t>(h));
    if (std::isnan(ref)) {
      // NaN keeps sign and payload: the mantissa moves to the top bits.
      const uint32_t want = ((h & 0x8000u) << 16) | 0x7f800000u | ((h & 0x3ffu) << 13);
      ASSERT_EQ(bits(got), want) << std::hex << h;
    } else {
      ASSERT_EQ(bits(got), bits(static_cast<float>(ref))) << std::hex << h;  // ref is exact in fp32
    }
  }
}

TEST(Convert, BF16ToF32Exhaustive) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float got = bf16_to_f32(static_cast<uint16_t>(b));
    const double ref = bf16_reference(static_cast<uint16_t>(b));
    ASSERT_EQ(bits(got), b << 16) << std::hex << b;
    if (std::isnan(ref))
      ASSERT_TRUE(std::isnan(got));
    else
      ASSERT_EQ(static_cast<double>(got), ref) << std::hex << b;
  }
}

TEST(Convert, RowConversionExhaustiveEveryIsa) {
  std::vector<uint16_t> all(65536 + 5);  // odd length exercises the vector tail
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<float> out(all.size());
  for (Isa isa : supported_isas()) {
    IsaScope scope(isa);
    SCOPED_TRACE(isa_name(isa));
    for (DType t : {DType::F16, DType::BF16}) {
      convert_row_to_f32(all.data(), t, static_cast<int64_t>(all.size()), out.data());
      for (size_t i = 0; i < all.size(); ++i) {
        const float want = t == DType::F16 ? f16_to_f32(all[i]) : bf16_to_f32(all[i]);
        if (std::isnan(want)) {
          // Hardware conversions may quiet a signalling NaN; it stays a NaN.
          ASSERT_TRUE(std::isnan(out[i])) << i;
          ASSERT_EQ(std::signbit(out[i]), std::signbit(want)) << i;
        } else {
          ASSERT_EQ(bits(out[i]), bits(want)) << "dtype " << static_cast<int>(t) << " bits " << i;
        }
      }
    }
    const std::vector<float> src = {1.5f, -2.25f, 3.0f};
    convert_row_to_f32(src.data(), DType::F32, 3, out.data());
    EXPECT_EQ(std::vector<float>(out.begin(), out.begin() + 3), src);
  }
}

TEST(Convert, F16RoundTripAndTiesToEven) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t hh = static_cast<uint16_t>(h);
    const float f = f16_to_f32(hh);
    if (std::isnan(f)) {
      const uint16_t r = f32_to_f16(f);
      ASSERT_EQ(r & 0x7c00u, 0x7c00u);
      ASSERT_NE(r & 0x3ffu, 0u) << "NaN must not become Inf";
      continue;
    }
    ASSERT_EQ(f32_to_f16(f), hh) << std::hex << h;
  }
  // Every midpoint between adjacent finite halves (exact in fp32), and the
  // floats just either side of it.
  for (uint32_t h = 0; h < 0x7bff; ++h) {
    for (uint32_t s : {0u, 0x8000u}) {
      const uint16_t a = static_cast<uint16_t>(h | s), b = static_cast<uint16_t>((h + 1) | s);
      const double mid = (f16_reference(a) + f16_reference(b)) / 2;
      const float fm = static_cast<float>(mid);
      ASSERT_EQ(static_cast<double>(fm), mid);
      const uint16_t even = (h & 1) ? b : a;
      ASSERT_EQ(f32_to_f16(fm), even) << std::hex << h;
      const float toward_b = std::nextafter(fm, s ? -INFINITY : INFINITY);
      const float toward_a = std::nextafter(fm, s ? INFINITY : -INFINITY);
      ASSERT_EQ(f32_to_f16(toward_b), b) << std::hex << h;
      ASSERT_EQ(f32_to_f16(toward_a), a) << std::hex << h;
    }
  }
}

TEST(Convert, F16EdgeCases) {
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(std::nextafter(65520.0f, 0.0f)), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // tie with odd max: rounds to Inf
  EXPECT_EQ(f32_to_f16(-65520.0f), 0xfc00);
  EXPECT_EQ(f32_to_f16(1e10f), 0x7c00);
  EXPECT_EQ(f32_to_f16(INFINITY), 0x7c00);
  EXPECT_EQ(f32_to_f16(-INFINITY), 0xfc00);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // tie between 0 and min subnormal
  EXPECT_EQ(f32_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -26)), 0x0001);  // 0.75 ulp -> 1
  EXPECT_EQ(f32_to_f16(std::ldexp(1.5f, -24)), 0x0002);  // tie 1.5 -> 2 (even)
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -30)), 0x0000);
  EXPECT_EQ(f32_to_f16(-std::ldexp(1.0f, -30)), 0x8000);
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  // Largest subnormal + half an ulp rounds up into the smallest normal.
  EXPECT_EQ(f32_to_f16(std::ldexp(1023.5f, -24)), 0x0400);
  // A NaN whose payload lies only in the low fp32 bits stays a NaN.
  const uint16_t n = f32_to_f16(from_bits(0x7f800001u));
  EXPECT_EQ(n & 0x7c00u, 0x7c00u);
  EXPECT_NE(n & 0x3ffu, 0u);
}

TEST(Convert, F16RandomIsNearest) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> d;
  for (int i = 0; i < 200000; ++i) {
    // Random bit patterns restricted to |f| < 65504 and not NaN.
    const float f = from_bits(d(rng));
    if (!(std::fabs(f) < 65504.0f)) continue;
    const uint16_t h = f32_to_f16(f);
    const double err = std::fabs(f16_reference(h) - f);
    for (int step : {-1, 1}) {
      const uint16_t nb = static_cast<uint16_t>((h & 0x7fff) + step) | (h & 0x8000);
      if ((h & 0x7fff) == 0 && step < 0) continue;
      ASSERT_LE(err, std::fabs(f16_reference(nb) - f)) << f;
    }
  }
}

TEST(Convert, BF16RoundTripAndTiesToEven) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = bf16_to_f32(static_cast<uint16_t>(b));
    if (std::isnan(f)) {
      const uint16_t r = f32_to_bf16(f);
      ASSERT_TRUE(std::isnan(bf16_to_f32(r))) << std::hex << b;
      continue;
    }
    ASSERT_EQ(f32_to_bf16(f), b) << std::hex << b;
  }
  // The midpoint between bf16 values b and b+1 is the fp32 pattern
  // (b << 16) | 0x8000 (also across binades and up to Inf).
  for (uint32_t b = 0; b < 0x7f80; ++b) {
    for (uint32_t s : {0u, 0x8000u}) {
      const uint32_t mid = ((b | s) << 16) | 0x8000u;
      const uint32_t even = (b & 1) ? b + 1 : b;
      ASSERT_EQ(f32_to_bf16(from_bits(mid)), even | s) << std::hex << b;
      ASSERT_EQ(f32_to_bf16(from_bits(mid + 1)), (b + 1) | s) << std::hex << b;
      ASSERT_EQ(f32_to_bf16(from_bits(mid - 1)), b | s) << std::hex << b;
    }
  }
  EXPECT_EQ(f32_to_bf16(INFINITY), 0x7f80);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // above the last tie
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(from_bits(0x7f800001u)))));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(from_bits(0xffc00000u)))));
}

// ---- matmul --------------------------------------------------------------------

// Weights stored in `type`, plus the exact values they decode to.
struct Weights {
  std::vector<uint8_t> raw;
  std::vector<double> value;
};

Weights make_weights(std::mt19937 &rng, DType type, int64_t m, int64_t k) {
  const auto f = random_floats(rng, static_cast<size_t>(m * k));
  Weights w;
  w.value.resize(f.size());
  if (type == DType::F32) {
    w.raw.resize(f.size() * 4);
    std::memcpy(w.raw.data(), f.data(), w.raw.size());
    for (size_t i = 0; i < f.size(); ++i) w.value[i] = f[i];
    return w;
  }
  w.raw.resize(f.size() * 2);
  auto *h = reinterpret_cast<uint16_t *>(w.raw.data());
  for (size_t i = 0; i < f.size(); ++i) {
    h[i] = type == DType::F16 ? f32_to_f16(f[i]) : f32_to_bf16(f[i]);
    w.value[i] = type == DType::F16 ? f16_to_f32(h[i]) : bf16_to_f32(h[i]);
  }
  return w;
}

struct MatmulCase {
  DType type;
  int64_t n, k, m;
  bool bias;
};

const float kSentinel = 12345.0f;  // padding of strided outputs must keep it

// Runs the case on every ISA; checks each against the float64 reference
// (error within 1e-5 of sum |x||w| + |bias|) and the paths against each other.
void check_matmul(ThreadPool &pool, const MatmulCase &c, std::mt19937 &rng) {
  SCOPED_TRACE(testing::Message() << "dtype " << static_cast<int>(c.type) << " n=" << c.n
                                  << " k=" << c.k << " m=" << c.m << " bias=" << c.bias);
  const int64_t ldx = c.k + 3, ldo = c.m + 5;
  const auto x = random_floats(rng, static_cast<size_t>(c.n * ldx));
  const auto bias = random_floats(rng, static_cast<size_t>(c.m));
  const Weights w = make_weights(rng, c.type, c.m, c.k);

  std::vector<double> ref(static_cast<size_t>(c.n * c.m)), mag(ref.size());
  for (int64_t i = 0; i < c.n; ++i) {
    for (int64_t j = 0; j < c.m; ++j) {
      double s = c.bias ? bias[j] : 0.0, a = c.bias ? std::fabs(bias[j]) : 0.0;
      for (int64_t kk = 0; kk < c.k; ++kk) {
        const double p = static_cast<double>(x[i * ldx + kk]) * w.value[j * c.k + kk];
        s += p;
        a += std::fabs(p);
      }
      ref[i * c.m + j] = s;
      mag[i * c.m + j] = a;
    }
  }

  std::vector<std::vector<float>> results;
  for (Isa isa : supported_isas()) {
    IsaScope scope(isa);
    SCOPED_TRACE(isa_name(isa));
    std::vector<float> out(static_cast<size_t>(c.n * ldo), kSentinel);
    matmul(pool, x.data(), c.n, c.k, ldx, w.raw.data(), c.type, c.m, c.bias ? bias.data() : nullptr,
           out.data(), ldo);
    for (int64_t i = 0; i < c.n; ++i) {
      for (int64_t j = 0; j < c.m; ++j) {
        const double tol = 1e-5 * mag[i * c.m + j] + 1e-30;
        ASSERT_NEAR(out[i * ldo + j], ref[i * c.m + j], tol) << "i=" << i << " j=" << j;
      }
      for (int64_t j = c.m; j < ldo; ++j) ASSERT_EQ(out[i * ldo + j], kSentinel) << "padding written";
    }
    results.push_back(out);
  }
  for (size_t r = 1; r < results.size(); ++r)
    for (int64_t i = 0; i < c.n; ++i)
      for (int64_t j = 0; j < c.m; ++j)
        ASSERT_NEAR(results[r][i * ldo + j], results[0][i * ldo + j], 2e-5 * mag[i * c.m + j] + 1e-30)
            << "paths disagree at i=" << i << " j=" << j;
}

TEST(Matmul, AgainstReferenceAllShapes) {
  std::mt19937 rng(1234);
  ThreadPool pool(3);
  bool bias = false;
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (int64_t k : {1, 7, 31, 384, 1000, 1027})
      for (int64_t n : {1, 2, 3, 4, 5, 8, 9, 17, 64})
        for (int64_t m : {1, 5, 130}) {
          check_matmul(pool, {t, n, k, m, bias}, rng);
          bias = !bias;
          if (HasFatalFailure()) return;
        }
}

TEST(Matmul, PanelAndTaskBoundaries) {
  // Row counts around the 16-row panels and the 16..64-row tasks, token
  // counts around the 6-token register blocks and the 8-token dot path, k
  // around the 256-column tiles.
  std::mt19937 rng(99);
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    for (int64_t m : {15, 16, 17, 63, 64, 65, 257})
      for (int64_t n : {6, 7, 8, 9, 12, 13})
        for (int64_t k : {255, 256, 257, 513}) {
          check_matmul(pool, {DType::BF16, n, k, m, (m + n) % 2 == 0}, rng);
          if (HasFatalFailure()) return;
        }
  }
}

TEST(Matmul, ZeroSizes) {
  ThreadPool pool(2);
  const float bias[3] = {1, 2, 3};
  float out[6] = {9, 9, 9, 9, 9, 9};
  const float x[2] = {1, 1};
  const float w[3] = {0, 0, 0};
  // k == 0: the empty sum, plus the bias.
  matmul(pool, x, 2, 0, 1, w, DType::F32, 3, bias, out, 3);
  EXPECT_EQ(std::vector<float>(out, out + 6), (std::vector<float>{1, 2, 3, 1, 2, 3}));
  matmul(pool, x, 2, 0, 1, w, DType::F32, 3, nullptr, out, 3);
  EXPECT_EQ(std::vector<float>(out, out + 6), std::vector<float>(6, 0.0f));
  // n == 0 or m == 0: nothing is written.
  float untouched = 7;
  matmul(pool, x, 0, 1, 1, w, DType::F32, 3, nullptr, &untouched, 3);
  matmul(pool, x, 1, 1, 1, w, DType::F32, 0, nullptr, &untouched, 3);
  EXPECT_EQ(untouched, 7);
}

// ---- element-wise and row kernels ----------------------------------------------

TEST(Ops, RmsNorm) {
  std::mt19937 rng(5);
  for (Isa isa : supported_isas()) {
    IsaScope scope(isa);
    for (int64_t dim : {1, 7, 1000, 1027}) {
      const int64_t n = 3;
      auto x = random_floats(rng, static_cast<size_t>(n * dim), -3, 3);
      const auto w = random_floats(rng, static_cast<size_t>(dim), 0.5f, 1.5f);
      std::vector<float> out(x.size());
      rmsnorm(x.data(), w.data(), n, dim, 1e-5f, out.data());
      for (int64_t r = 0; r < n; ++r) {
        double ss = 0;
        for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(x[r * dim + i]) * x[r * dim + i];
        const double inv = 1.0 / std::sqrt(ss / dim + 1e-5);
        for (int64_t i = 0; i < dim; ++i) {
          const double ref = x[r * dim + i] * inv * w[i];
          ASSERT_NEAR(out[r * dim + i], ref, 1e-6 * std::fabs(ref) + 1e-30) << dim;
        }
      }
      // In place gives the same result.
      rmsnorm(x.data(), w.data(), n, dim, 1e-5f, x.data());
      EXPECT_EQ(x, out);
    }
  }
}

TEST(Ops, SiluMul) {
  std::mt19937 rng(6);
  for (Isa isa : supported_isas()) {
    IsaScope scope(isa);
    SCOPED_TRACE(isa_name(isa));
    for (int64_t n : {1, 7, 31, 1027}) {
      auto g = random_floats(rng, static_cast<size_t>(n), -20, 20);
      const std::vector<float> special = {0.0f, -0.0f, 100.0f, -100.0f, 88.0f, -88.0f, 1e-30f, -1e-30f};
      for (size_t i = 0; i < special.size() && i < g.size(); ++i) g[i] = special[i];
      const auto up = random_floats(rng, static_cast<size_t>(n), -2, 2);
      auto out = g;
      silu_mul(out.data(), up.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double gd = g[i];
        const double ref = gd / (1.0 + std::exp(-gd)) * up[i];
        ASSERT_NEAR(out[i], ref, 2e-6 * std::fabs(ref) + 1e-30) << "g=" << g[i];
      }
    }
  }
}

TEST(Ops, Add) {
  std::mt19937 rng(8);
  auto x = random_floats(rng, 1027);
  const auto y = random_floats(rng, 1027);
  const auto x0 = x;
  add(x.data(), y.data(), 1027);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(x[i], x0[i] + y[i]);
}

TEST(Ops, SoftmaxStable) {
  std::mt19937 rng(9);
  for (Isa isa : supported_isas()) {
    IsaScope scope(isa);
    SCOPED_TRACE(isa_name(isa));
    for (int64_t n : {1, 7, 8, 31, 1000, 1027}) {
      // A large common offset would overflow exp() without the max shift;
      // the wide spread makes some weights underflow.
      auto x = random_floats(rng, static_cast<size_t>(n), -60, 60);
      for (auto &v : x) v += 1000.0f;
      auto y = x;
      softmax(y.data(), n);
      double mx = -INFINITY, sum = 0;
      // (std::max, not std::fmax: GCC 12's aarch64 vectorizer crashes on
      // this fmax reduction from float to double; the values are finite.)
      for (float v : x) mx = std::max(mx, static_cast<double>(v));
      for (float v : x) sum += std::exp(static_cast<double>(v) - mx);
      double total = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double ref = std::exp(static_cast<double>(x[i]) - mx) / sum;
        ASSERT_NEAR(y[i], ref, 2e-6 * ref + 1e-30) << "n=" << n << " i=" << i;
        total += y[i];
      }
      EXPECT_NEAR(total, 1.0, 1e-5);
    }
    float one = -5.0f;
    softmax(&one, 1);
    EXPECT_EQ(one, 1.0f);
  }
}

TEST(Ops, RopeRotateHalf) {
  std::mt19937 rng(10);
  for (int64_t head_dim : {2, 8, 64, 128}) {
    const int64_t heads = 3, half = head_dim / 2;
    auto x = random_floats(rng, static_cast<size_t>(heads * head_dim));
    const auto angle = random_floats(rng, static_cast<size_t>(half), -3.14f, 3.14f);
    std::vector<float> c(static_cast<size_t>(half)), s(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i) {
      c[i] = std::cos(angle[i]);
      s[i] = std::sin(angle[i]);
    }
    auto y = x;
    rope(y.data(), heads, head_dim, c.data(), s.data());
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < head_dim; ++i) {
        // HF: x*cos + rotate_half(x)*sin with rotate_half(x) = (-x2, x1).
        const double xi = x[h * head_dim + i];
        const double rot = i < half ? -static_cast<double>(x[h * head_dim + i + half]) : x[h * head_dim + i - half];
        const double ref = xi * c[i % half] + rot * s[i % half];
        ASSERT_NEAR(y[h * head_dim + i], ref, 1e-6) << head_dim;
      }
  }
}

// ---- attention ------------------------------------------------------------------

struct AttnCase {
  int64_t n_q, n_heads, n_kv_heads, head_dim, pos0, window;
};

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// A paged cache built from contiguous K/V ([kv_head][cap][head_dim] floats):
// pages of `page_tokens` positions, placed in the buffer in reverse order so
// that logical and physical order differ. Rows are encoded in `type`.
struct PagedCache {
  std::vector<uint8_t> buf;
  std::vector<int32_t> pages;
  KvLayerView view;
  PagedCache(KvType type, const std::vector<float> &k, const std::vector<float> &v, int64_t n_kv, int64_t cap,
             int64_t hd, int64_t page_tokens) {
    const size_t row = kv_row_bytes(type, hd);
    const int64_t n_pages = (cap + page_tokens - 1) / page_tokens;
    const size_t head_stride = static_cast<size_t>(page_tokens) * row, kind_stride = n_kv * head_stride;
    const size_t page_stride = 2 * kind_stride + 8;  // padding between pages
    buf.assign(static_cast<size_t>(n_pages) * page_stride, 0xEE);
    for (int64_t p = 0; p < n_pages; ++p) pages.push_back(static_cast<int32_t>(n_pages - 1 - p));
    view = KvLayerView{type, hd, row, buf.data(), buf.data() + kind_stride, pages.data(), page_tokens,
                       page_stride, head_stride};
    for (int64_t h = 0; h < n_kv; ++h)
      for (int64_t j = 0; j < cap; ++j) {
        const float *kr = k.data() + (h * cap + j) * hd, *vr = v.data() + (h * cap + j) * hd;
        if (std::isnan(kr[0])) continue;  // never-written slots keep the 0xEE filler
        kv_quantize_row(type, kr, hd, const_cast<uint8_t *>(view.k_row(h, j)));
        kv_quantize_row(type, vr, hd, const_cast<uint8_t *>(view.v_row(h, j)));
      }
  }
};

// Attention scratch of exactly the documented size for a context of n_ctx
// positions, filled with NaN: reading a value the kernel did not write shows.
struct AttnScratch {
  int64_t stride;
  std::vector<float> floats;
  AttnScratch(const ThreadPool &pool, int64_t n_ctx, int64_t n_heads, int64_t n_kv, int64_t hd)
      : stride(paged_attention_scratch_stride(n_ctx, n_heads, n_kv, hd)),
        floats(static_cast<size_t>(pool.size() * stride), kNaN) {}
};

// Attention over an f32 paged copy of contiguous K/V caches, with a scratch
// sized for positions 0 .. pos0 + n_q - 1.
void attention(ThreadPool &pool, const float *q, int64_t n_q, int64_t q_stride, int64_t n_heads, int64_t n_kv,
               int64_t hd, const float *k, const float *v, int64_t cap, int64_t pos0, int64_t window, float scale,
               float *out, int64_t out_stride) {
  const size_t n = static_cast<size_t>(n_kv * cap * hd);
  PagedCache c(KvType::F32, std::vector<float>(k, k + n), std::vector<float>(v, v + n), n_kv, cap, hd, 4);
  AttnScratch scratch(pool, pos0 + n_q, n_heads, n_kv, hd);
  paged_attention(pool, q, n_q, q_stride, n_heads, n_kv, c.view, pos0, window, scale, out, out_stride,
                  scratch.floats.data(), scratch.stride);
}

// Float64 reference: query i at p = pos0 + i attends to j <= p, p - j < window.
std::vector<double> attention_reference(const AttnCase &c, const std::vector<float> &q, int64_t q_stride,
                                        const std::vector<float> &k, const std::vector<float> &v,
                                        int64_t cap, double scale) {
  std::vector<double> out(static_cast<size_t>(c.n_q * c.n_heads * c.head_dim));
  const int64_t group = c.n_heads / c.n_kv_heads;
  for (int64_t i = 0; i < c.n_q; ++i)
    for (int64_t h = 0; h < c.n_heads; ++h) {
      const int64_t p = c.pos0 + i, kvh = h / group;
      std::vector<double> s;
      std::vector<int64_t> pos;
      for (int64_t j = 0; j <= p; ++j) {
        if (c.window > 0 && p - j >= c.window) continue;
        double d = 0;
        for (int64_t e = 0; e < c.head_dim; ++e)
          d += static_cast<double>(q[i * q_stride + h * c.head_dim + e]) * k[(kvh * cap + j) * c.head_dim + e];
        s.push_back(d * scale);
        pos.push_back(j);
      }
      double mx = -INFINITY, sum = 0;
      for (double d : s) mx = std::max(mx, d);
      for (double &d : s) sum += (d = std::exp(d - mx));
      for (int64_t e = 0; e < c.head_dim; ++e) {
        double acc = 0;
        for (size_t t = 0; t < s.size(); ++t) acc += s[t] / sum * v[(kvh * cap + pos[t]) * c.head_dim + e];
        out[(i * c.n_heads + h) * c.head_dim + e] = acc;
      }
    }
  return out;
}

void check_attention(ThreadPool &pool, const AttnCase &c, std::mt19937 &rng) {
  SCOPED_TRACE(testing::Message() << "n_q=" << c.n_q << " heads=" << c.n_heads << "/" << c.n_kv_heads
                                  << " hd=" << c.head_dim << " pos0=" << c.pos0 << " window=" << c.window);
  const int64_t cap = c.pos0 + c.n_q + 4;
  const int64_t q_stride = c.n_heads * c.head_dim + 3, out_stride = c.n_heads * c.head_dim + 5;
  const auto q = random_floats(rng, static_cast<size_t>(c.n_q * q_stride), -2, 2);
  auto k = random_floats(rng, static_cast<size_t>(c.n_kv_heads * cap * c.head_dim), -2, 2);
  auto v = random_floats(rng, static_cast<size_t>(c.n_kv_heads * cap * c.head_dim));
  // Cache slots past the last valid position must never be read.
  for (int64_t h = 0; h < c.n_kv_heads; ++h)
    for (int64_t j = c.pos0 + c.n_q; j < cap; ++j)
      for (int64_t e = 0; e < c.head_dim; ++e) k[(h * cap + j) * c.head_dim + e] = v[(h * cap + j) * c.head_dim + e] = kNaN;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const auto ref = attention_reference(c, q, q_stride, k, v, cap, scale);

  for (Isa isa : supported_isas()) {
    IsaScope scope(isa);
    SCOPED_TRACE(isa_name(isa));
    std::vector<float> out(static_cast<size_t>(c.n_q * out_stride), kSentinel);
    attention(pool, q.data(), c.n_q, q_stride, c.n_heads, c.n_kv_heads, c.head_dim, k.data(), v.data(), cap,
              c.pos0, c.window, scale, out.data(), out_stride);
    for (int64_t i = 0; i < c.n_q; ++i) {
      for (int64_t e = 0; e < c.n_heads * c.head_dim; ++e)
        ASSERT_NEAR(out[i * out_stride + e], ref[i * c.n_heads * c.head_dim + e], 2e-6) << "i=" << i << " e=" << e;
      for (int64_t e = c.n_heads * c.head_dim; e < out_stride; ++e) ASSERT_EQ(out[i * out_stride + e], kSentinel);
    }
  }
}

TEST(Attention, AgainstReference) {
  std::mt19937 rng(11);
  // 1, 2 and 3 threads: decode cases split their groups into 1, 2 or more
  // shares of query heads.
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (AttnCase c : {AttnCase{9, 6, 2, 16, 5, 0},    // prefill after a prefix, GQA groups of 3
                       AttnCase{9, 6, 2, 16, 5, 4},    // sliding window
                       AttnCase{1, 4, 4, 64, 40, 0},   // decode, MHA
                       AttnCase{1, 4, 1, 64, 40, 7},   // decode, MQA, window
                       AttnCase{17, 8, 2, 7, 0, 0},    // fresh prompt, odd head_dim
                       AttnCase{17, 8, 2, 7, 0, 5},
                       AttnCase{12, 2, 2, 128, 3, 100},  // window larger than the context
                       AttnCase{1, 40, 2, 32, 70, 0},    // groups of 20: more heads than one task takes
                       AttnCase{2, 8, 1, 100, 33, 0}}) {  // two queries, MQA, rows padded to 112
      check_attention(pool, c, rng);
      if (HasFatalFailure()) return;
    }
  }
}

TEST(Attention, WindowOfOneReturnsOwnValue) {
  // With window 1 each query sees only its own position: out = v[p].
  std::mt19937 rng(12);
  ThreadPool pool(2);
  const int64_t n_q = 5, heads = 4, kv = 2, hd = 8, pos0 = 3, cap = 10;
  const auto q = random_floats(rng, static_cast<size_t>(n_q * heads * hd));
  const auto k = random_floats(rng, static_cast<size_t>(kv * cap * hd));
  const auto v = random_floats(rng, static_cast<size_t>(kv * cap * hd));
  std::vector<float> out(static_cast<size_t>(n_q * heads * hd));
  for (Isa isa : supported_isas()) {
    IsaScope scope(isa);
    attention(pool, q.data(), n_q, heads * hd, heads, kv, hd, k.data(), v.data(), cap, pos0, 1, 0.5f,
              out.data(), heads * hd);
    for (int64_t i = 0; i < n_q; ++i)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t e = 0; e < hd; ++e)
          ASSERT_EQ(out[(i * heads + h) * hd + e], v[((h / 2) * cap + pos0 + i) * hd + e]);
  }
}

TEST(Attention, CausalMaskIgnoresFuture) {
  // Changing keys/values at positions after a query must not change it.
  std::mt19937 rng(13);
  ThreadPool pool(2);
  const int64_t n_q = 6, heads = 2, hd = 16, cap = 6;
  const auto q = random_floats(rng, static_cast<size_t>(n_q * heads * hd));
  auto k = random_floats(rng, static_cast<size_t>(heads * cap * hd));
  auto v = random_floats(rng, static_cast<size_t>(heads * cap * hd));
  std::vector<float> a(q.size()), b(q.size());
  attention(pool, q.data(), n_q, heads * hd, heads, heads, hd, k.data(), v.data(), cap, 0, 0, 0.25f,
            a.data(), heads * hd);
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t e = 0; e < hd; ++e) k[(h * cap + 5) * hd + e] = v[(h * cap + 5) * hd + e] = 50.0f;
  attention(pool, q.data(), n_q, heads * hd, heads, heads, hd, k.data(), v.data(), cap, 0, 0, 0.25f,
            b.data(), heads * hd);
  for (int64_t i = 0; i < 5 * heads * hd; ++i) ASSERT_EQ(a[i], b[i]) << i;  // queries 0..4
  bool last_changed = false;
  for (int64_t i = 5 * heads * hd; i < n_q * heads * hd; ++i) last_changed |= a[i] != b[i];
  EXPECT_TRUE(last_changed);
}

// Every KV row type: attention over the quantized cache equals the float64
// reference computed on the decoded rows (so only the arithmetic differs), on
// every ISA; and encoding error stays within half a quantization step.
TEST(KvCache, RowRoundTripWithinHalfStep) {
  std::mt19937 rng(21);
  for (int64_t hd : {32, 64, 128}) {
    const auto x = random_floats(rng, static_cast<size_t>(hd), -3, 3);
    for (KvType t : {KvType::F32, KvType::F16, KvType::BF16, KvType::Q8, KvType::Q4}) {
      std::vector<uint8_t> row(kv_row_bytes(t, hd));
      std::vector<float> back(static_cast<size_t>(hd));
      kv_quantize_row(t, x.data(), hd, row.data());
      kv_dequantize_row(t, row.data(), hd, back.data());
      // Rotated types quantize R·x: compare there (R is its own inverse).
      std::vector<float> xs = x;
      if (kv_rotated(t)) {
        kv_rotate(xs.data(), hd);
        kv_rotate(back.data(), hd);
      }
      const std::vector<float> &xv = xs;
      for (int64_t g = 0; g < hd; g += 32) {
        float amax = 0;
        for (int64_t i = g; i < g + 32; ++i) amax = std::max(amax, std::fabs(xv[i]));
        double bound = 0;
        switch (t) {
          case KvType::F32: bound = 0; break;
          case KvType::F16: bound = amax * 0x1p-11; break;
          case KvType::BF16: bound = amax * 0x1p-8; break;
          case KvType::Q8: {  // one scale per row
            float row_amax = 0;
            for (float e : xv) row_amax = std::max(row_amax, std::fabs(e));
            bound = 0.5 * row_amax / 127 * 1.001;
            break;
          }
          case KvType::Q4: bound = amax / 8 * 1.002 + 1e-6; break;  // the far extreme may clip by one step
        }
        for (int64_t i = g; i < g + 32; ++i)
          ASSERT_LE(std::fabs(back[i] - xv[i]), bound) << kv_type_name(t) << " hd=" << hd << " i=" << i;
      }
    }
  }
  // The rotation is orthonormal and its own inverse.
  std::vector<float> y = random_floats(rng, 96), z = y;
  kv_rotate(z.data(), 96);
  double ny = 0, nz = 0;
  for (int i = 0; i < 96; ++i) ny += y[i] * y[i], nz += z[i] * z[i];
  EXPECT_NEAR(ny, nz, 1e-4 * ny);
  kv_rotate(z.data(), 96);
  for (int i = 0; i < 96; ++i) ASSERT_NEAR(z[i], y[i], 1e-5);
  EXPECT_EQ(kv_rotation_block(96), 32);
  EXPECT_EQ(kv_rotation_block(64), 64);
  EXPECT_EQ(kv_row_bytes(KvType::Q8, 64), 66u);
  EXPECT_EQ(kv_row_bytes(KvType::Q4, 64), 36u);
  EXPECT_FALSE(kv_type_fits(KvType::Q4, 48));
  EXPECT_TRUE(kv_type_fits(KvType::Q8, 48));
}

TEST(KvCache, QuantizedAttentionMatchesDecodedReference) {
  std::mt19937 rng(22);
  ThreadPool pool(2);
  for (KvType t : {KvType::F16, KvType::BF16, KvType::Q8, KvType::Q4}) {
    for (AttnCase c : {AttnCase{7, 4, 2, 64, 21, 0}, AttnCase{1, 8, 2, 32, 50, 0}, AttnCase{5, 4, 4, 96, 3, 6}}) {
      SCOPED_TRACE(testing::Message() << kv_type_name(t) << " n_q=" << c.n_q << " hd=" << c.head_dim);
      const int64_t cap = c.pos0 + c.n_q, hd = c.head_dim;
      const int64_t stride = c.n_heads * hd;
      const auto q = random_floats(rng, static_cast<size_t>(c.n_q * stride), -2, 2);
      const auto k = random_floats(rng, static_cast<size_t>(c.n_kv_heads * cap * hd), -2, 2);
      const auto v = random_floats(rng, static_cast<size_t>(c.n_kv_heads * cap * hd));
      PagedCache pc(t, k, v, c.n_kv_heads, cap, hd, 16);
      // Decoded rows, as the reference's input.
      std::vector<float> kd(k.size()), vd(v.size());
      for (int64_t h = 0; h < c.n_kv_heads; ++h)
        for (int64_t j = 0; j < cap; ++j) {
          kv_dequantize_row(t, pc.view.k_row(h, j), hd, kd.data() + (h * cap + j) * hd);
          kv_dequantize_row(t, pc.view.v_row(h, j), hd, vd.data() + (h * cap + j) * hd);
        }
      const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
      const auto ref = attention_reference(c, q, stride, kd, vd, cap, scale);
      for (Isa isa : supported_isas()) {
        IsaScope scope(isa);
        SCOPED_TRACE(isa_name(isa));
        std::vector<float> out(static_cast<size_t>(c.n_q * stride), kSentinel);
        AttnScratch scratch(pool, cap, c.n_heads, c.n_kv_heads, hd);
        paged_attention(pool, q.data(), c.n_q, stride, c.n_heads, c.n_kv_heads, pc.view, c.pos0, c.window, scale,
                        out.data(), stride, scratch.floats.data(), scratch.stride);
        for (size_t e = 0; e < out.size(); ++e) ASSERT_NEAR(out[e], ref[e], 3e-6) << e;
      }
    }
  }
}

}  // namespace
}  // namespace llm::cpu
