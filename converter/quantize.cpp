#include "converter/quantize.h"

#include <cmath>
#include <thread>

#include "format/error.h"
#include "kernels/cpu/kernels.h"

namespace llm::convert {
namespace {

// Integer range of a stored value and of a zero point.
struct Range {
  int qmin, qmax;  // stored values
  int zsym;        // zero point of the symmetric form
};

Range range_of(DType dtype) {
  return dtype == DType::I4 ? Range{0, 15, 8} : Range{-128, 127, 0};
}

float round_f16(float v) { return cpu::f16_to_f32(cpu::f32_to_f16(v)); }

int clamp_round(float v, int lo, int hi) {
  const float r = std::nearbyint(v);
  return !(r >= lo) ? lo : r > hi ? hi : static_cast<int>(r);  // NaN -> lo
}

// One group's choice: scale, zero point and the resulting weighted error.
struct GroupFit {
  float scale = 0;
  int zero = 0;
  double err = 0;
};

// Weighted squared error of representing w with (scale, zero), scale already
// rounded to f16 as stored.
double fit_error(const float *w, const float *imp, int n, float scale, int zero, const Range &r) {
  double err = 0;
  const float inv = scale != 0 ? 1.0f / scale : 0.0f;
  for (int i = 0; i < n; ++i) {
    const int q = clamp_round(w[i] * inv + zero, r.qmin, r.qmax);
    const double d = w[i] - static_cast<double>(q - zero) * scale;
    err += (imp ? imp[i] : 1.0) * d * d;
  }
  return err;
}

// Symmetric: zero point fixed. Candidate scales map the largest-magnitude
// value onto a slightly different integer each time; for each candidate the
// least-squares scale for the resulting integers is also tried.
GroupFit fit_symmetric(const float *w, const float *imp, int n, const Range &r, bool search) {
  float amax = 0, signed_max = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(w[i]) > amax) {
      amax = std::fabs(w[i]);
      signed_max = w[i];
    }
  GroupFit best;
  best.zero = r.zsym;
  if (amax == 0) return best;
  // The extreme value goes to the far end of the asymmetric integer range
  // (e.g. -8 of [-8, 7] for int4), as that end is one step longer.
  const float nmax = static_cast<float>(r.zsym - r.qmin);  // 8 for int4, 128 for int8
  auto consider = [&](float scale) {
    scale = round_f16(scale);
    if (scale == 0 || !std::isfinite(scale)) return;
    const double e = fit_error(w, imp, n, scale, r.zsym, r);
    if (best.scale == 0 || e < best.err) best = GroupFit{scale, r.zsym, e};
  };
  consider(-signed_max / nmax);
  if (!search) return best;
  for (int step = -9; step <= 9; ++step) {
    const float iscale = -(nmax + 0.1f * step) / signed_max;
    consider(1.0f / iscale);
    // Least-squares scale for the integers this candidate produces.
    double num = 0, den = 0;
    for (int i = 0; i < n; ++i) {
      const int q = clamp_round(w[i] * iscale + r.zsym, r.qmin, r.qmax) - r.zsym;
      const double wi = imp ? imp[i] : 1.0;
      num += wi * w[i] * q;
      den += wi * static_cast<double>(q) * q;
    }
    if (den > 0) consider(static_cast<float>(num / den));
  }
  return best;
}

// Asymmetric: integer zero point. Candidates shrink the [min, max] range from
// either end (clipping outliers can lower the total error).
GroupFit fit_asymmetric(const float *w, const float *imp, int n, const Range &r, bool search) {
  float lo = w[0], hi = w[0];
  for (int i = 1; i < n; ++i) {
    lo = std::min(lo, w[i]);
    hi = std::max(hi, w[i]);
  }
  lo = std::min(lo, 0.0f);  // keep 0 representable exactly
  hi = std::max(hi, 0.0f);
  GroupFit best;
  if (hi - lo == 0) {
    best.zero = r.zsym;
    return best;
  }
  const int levels = r.qmax - r.qmin;
  auto consider = [&](float a, float b) {
    const float scale = round_f16((b - a) / levels);
    if (scale == 0 || !std::isfinite(scale)) return;
    const int zero = clamp_round(r.qmin - a / scale, r.qmin, r.qmax);
    const double e = fit_error(w, imp, n, scale, zero, r);
    if (best.scale == 0 || e < best.err) best = GroupFit{scale, zero, e};
  };
  consider(lo, hi);
  if (!search) return best;
  for (int i = 0; i <= 10; ++i)
    for (int j = 0; j <= 10; ++j) {
      if (i == 0 && j == 0) continue;
      consider(lo * (1.0f - 0.03f * i), hi * (1.0f - 0.03f * j));
    }
  return best;
}

// Writes group values into the row's storage: int8 bytes, or int4 nibbles in
// blocks of 32 (byte k holds element k low and element k + 16 high).
void store(DType dtype, const int *q, int64_t first, int n, uint8_t *row) {
  if (dtype == DType::I8) {
    for (int i = 0; i < n; ++i) row[first + i] = static_cast<uint8_t>(static_cast<int8_t>(q[i]));
    return;
  }
  for (int b = 0; b < n; b += 32) {
    uint8_t *dst = row + (first + b) / 2;
    for (int k = 0; k < 16; ++k)
      dst[k] = static_cast<uint8_t>((q[b + k] & 15) | ((q[b + k + 16] & 15) << 4));
  }
}

void quantize_row(const float *w, int64_t cols, const QuantConfig &cfg, const float *importance,
                  uint8_t *q_row, uint16_t *scales, uint8_t *zeros, QuantError *err) {
  const Range r = range_of(cfg.dtype);
  const int g = static_cast<int>(cfg.group_size);
  std::vector<int> q(g);
  for (int64_t c = 0; c < cols; c += g) {
    const float *wg = w + c;
    const float *imp = importance ? importance + c : nullptr;
    GroupFit fit = cfg.asymmetric ? fit_asymmetric(wg, imp, g, r, cfg.search)
                                  : fit_symmetric(wg, imp, g, r, cfg.search);
    const float inv = fit.scale != 0 ? 1.0f / fit.scale : 0.0f;
    for (int i = 0; i < g; ++i) {
      q[i] = clamp_round(wg[i] * inv + fit.zero, r.qmin, r.qmax);
      const double d = wg[i] - static_cast<double>(q[i] - fit.zero) * fit.scale;
      err->sum_sq_err += d * d;
      err->sum_sq += static_cast<double>(wg[i]) * wg[i];
      err->max_abs = std::max(err->max_abs, std::fabs(d));
    }
    store(cfg.dtype, q.data(), c, g, q_row);
    scales[c / g] = cpu::f32_to_f16(fit.scale);
    if (zeros) zeros[c / g] = static_cast<uint8_t>(static_cast<int8_t>(fit.zero));
  }
}

}  // namespace

uint64_t quant_row_bytes(DType dtype, int64_t cols) {
  return dtype == DType::I4 ? static_cast<uint64_t>(cols) / 2 : static_cast<uint64_t>(cols);
}

void quantize_rows(const float *w, int64_t rows, int64_t cols, const QuantConfig &cfg,
                   const float *importance, uint8_t *q, uint16_t *scales, uint8_t *zeros,
                   int n_threads, QuantError *err) {
  if ((cfg.dtype != DType::I8 && cfg.dtype != DType::I4) || cfg.group_size == 0 || cfg.group_size % 32 != 0 ||
      cols % cfg.group_size != 0)
    fail(LLM_ERR_INTERNAL, "quantize_rows: invalid configuration");
  const int64_t groups = cols / cfg.group_size;
  const uint64_t row_bytes = quant_row_bytes(cfg.dtype, cols);
  n_threads = std::max(1, std::min<int>(n_threads, static_cast<int>(rows)));
  std::vector<QuantError> errs(static_cast<size_t>(n_threads));
  auto work = [&](int t) {
    for (int64_t r = t; r < rows; r += n_threads)
      quantize_row(w + r * cols, cols, cfg, importance, q + r * row_bytes, scales + r * groups,
                   zeros ? zeros + r * groups : nullptr, &errs[t]);
  };
  std::vector<std::thread> threads;
  for (int t = 1; t < n_threads; ++t) threads.emplace_back(work, t);
  work(0);
  for (std::thread &th : threads) th.join();
  for (const QuantError &e : errs) err->merge(e);
}

}  // namespace llm::convert
