// The converter's group quantizer: reconstruction error bounds, the scale
// search beating round-to-nearest, importance weighting, and agreement of its
// byte layout with the kernels' dequantization (kernels/cpu/quant.h).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "converter/quantize.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/quant.h"

namespace {

using llm::DType;
using llm::convert::QuantConfig;
using llm::convert::QuantError;

std::vector<float> gaussian(int64_t n, uint32_t seed, float outlier_every = 0) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 0.02f);
  std::vector<float> w(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) w[i] = d(rng) * (outlier_every > 0 && i % int64_t(outlier_every) == 0 ? 8.0f : 1.0f);
  return w;
}

struct Quantized {
  std::vector<uint8_t> q;
  std::vector<uint16_t> scales;
  std::vector<uint8_t> zeros;
  QuantError err;
};

Quantized quantize(const std::vector<float> &w, int64_t rows, int64_t cols, const QuantConfig &cfg,
                   const float *importance = nullptr, int threads = 2) {
  Quantized r;
  r.q.resize(static_cast<size_t>(rows * llm::convert::quant_row_bytes(cfg.dtype, cols)));
  r.scales.resize(static_cast<size_t>(rows * cols / cfg.group_size));
  if (cfg.asymmetric) r.zeros.resize(r.scales.size());
  llm::convert::quantize_rows(w.data(), rows, cols, cfg, importance, r.q.data(), r.scales.data(),
                              cfg.asymmetric ? r.zeros.data() : nullptr, threads, &r.err);
  return r;
}

std::vector<float> dequantize(const Quantized &qz, int64_t rows, int64_t cols, const QuantConfig &cfg) {
  llm::cpu::QuantWeight qw;
  qw.dtype = cfg.dtype;
  qw.rows = rows;
  qw.cols = cols;
  qw.group = cfg.group_size;
  qw.q = qz.q.data();
  qw.scales = qz.scales.data();
  qw.zeros = cfg.asymmetric ? qz.zeros.data() : nullptr;
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) llm::cpu::dequantize_row(qw, r, out.data() + r * cols);
  return out;
}

double rel_rmse(const std::vector<float> &a, const std::vector<float> &b) {
  double e = 0, s = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    e += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    s += double(a[i]) * a[i];
  }
  return std::sqrt(e / s);
}

TEST(Quantize, ErrorBoundsAndLayoutAgreeWithKernels) {
  const int64_t rows = 24, cols = 384;
  const std::vector<float> w = gaussian(rows * cols, 7);
  for (DType dt : {DType::I8, DType::I4})
    for (uint32_t g : {32u, 64u, 128u})
      for (bool asym : {false, true}) {
        QuantConfig cfg{dt, g, asym, true};
        Quantized qz = quantize(w, rows, cols, cfg);
        // What the kernels reconstruct is exactly what the quantizer measured.
        std::vector<float> back = dequantize(qz, rows, cols, cfg);
        const double measured = qz.err.relative_rmse(), actual = rel_rmse(w, back);
        EXPECT_NEAR(actual, measured, 1e-6) << llm::dtype_name(dt) << " g" << g << " asym " << asym;
        // Gaussian weights: int8 ~0.4%, int4 ~10% relative RMSE.
        EXPECT_LT(actual, dt == DType::I8 ? 0.01 : 0.13) << llm::dtype_name(dt) << " g" << g;
        EXPECT_GT(actual, dt == DType::I8 ? 1e-4 : 0.03);  // and it is really quantized
      }
}

TEST(Quantize, ScaleSearchBeatsRoundToNearest) {
  const int64_t rows = 64, cols = 256;
  const std::vector<float> w = gaussian(rows * cols, 11, 37);
  for (bool asym : {false, true}) {
    QuantConfig rtn{DType::I4, 32, asym, false}, searched{DType::I4, 32, asym, true};
    const double e_rtn = quantize(w, rows, cols, rtn).err.relative_rmse();
    const double e_search = quantize(w, rows, cols, searched).err.relative_rmse();
    std::printf("[ metric ] int4 g32 %s: relative RMSE round-to-nearest %.4f, searched %.4f\n",
                asym ? "asymmetric" : "symmetric", e_rtn, e_search);
    EXPECT_LT(e_search, e_rtn * 0.99);  // strictly better; equal would mean no search
  }
}

TEST(Quantize, ImportanceProtectsSalientColumns) {
  const int64_t rows = 64, cols = 128;
  const std::vector<float> w = gaussian(rows * cols, 5);
  std::vector<float> importance(cols, 1.0f);
  for (int64_t c = 0; c < cols; c += 8) importance[c] = 100.0f;  // every 8th column matters most
  auto salient_error = [&](const Quantized &qz, const QuantConfig &cfg) {
    std::vector<float> back = dequantize(qz, rows, cols, cfg);
    double e = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) e += importance[c] * std::pow(double(w[r * cols + c]) - back[r * cols + c], 2);
    return e;
  };
  QuantConfig cfg{DType::I4, 32, false, true};
  const double plain = salient_error(quantize(w, rows, cols, cfg), cfg);
  const double weighted = salient_error(quantize(w, rows, cols, cfg, importance.data()), cfg);
  EXPECT_LT(weighted, plain * 0.95);
}

TEST(Quantize, ZeroGroupsAndThreadCountsAreExact) {
  const int64_t rows = 9, cols = 64;
  std::vector<float> w = gaussian(rows * cols, 3);
  for (int64_t c = 0; c < 32; ++c) w[c] = 0.0f;  // an all-zero group
  for (bool asym : {false, true}) {
    QuantConfig cfg{DType::I4, 32, asym, true};
    Quantized a = quantize(w, rows, cols, cfg, nullptr, 1), b = quantize(w, rows, cols, cfg, nullptr, 3);
    EXPECT_EQ(a.q, b.q);
    EXPECT_EQ(a.scales, b.scales);
    std::vector<float> back = dequantize(a, rows, cols, cfg);
    for (int64_t c = 0; c < 32; ++c) EXPECT_EQ(back[c], 0.0f);
    for (float v : back) EXPECT_TRUE(std::isfinite(v));
  }
}

}  // namespace
