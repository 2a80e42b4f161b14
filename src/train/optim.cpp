#include "train/optim.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <vector>

#include "core/error.h"

namespace moe::train {

namespace {

// Elements per task in the parallel loops. global_norm's summation order is fixed by this block size
// (never by the thread count), which is what makes its result independent of the pool.
constexpr int64_t kBlock = 16384;

// Runs fn(begin, end) over [0, n) on the pool (or inline without one).
template <class Fn>
void parallel_for(int64_t n, ThreadPool* pool, Fn&& fn) {
  if (!pool || pool->size() <= 1 || n <= kBlock) {
    fn(int64_t{0}, n);
    return;
  }
  pool->run(
      n, [&](int, int64_t begin, int64_t end) { fn(begin, end); }, kBlock);
}

}  // namespace

AdamW::AdamW(int64_t n, AdamWConfig cfg) : cfg_(cfg) {
  MOE_CHECK(n >= 0, "AdamW: negative parameter count ", n);
  MOE_CHECK(cfg.beta1 >= 0.0f && cfg.beta1 < 1.0f && cfg.beta2 >= 0.0f && cfg.beta2 < 1.0f,
            "AdamW: betas must be in [0, 1), got ", cfg.beta1, ", ", cfg.beta2);
  MOE_CHECK(cfg.eps > 0.0f && cfg.weight_decay >= 0.0f, "AdamW: eps must be > 0 and weight decay >= 0");
  m_.assign(static_cast<size_t>(n), 0.0f);
  v_.assign(static_cast<size_t>(n), 0.0f);
}

void AdamW::step(float* params, const float* grads, const uint8_t* decay, float lr, ThreadPool* pool) {
  MOE_CHECK(m_.size() == v_.size(), "AdamW: moment buffers differ in size (", m_.size(), " vs ", v_.size(),
            "); a restored state must keep both at n");
  ++t_;
  // Scalars are formed as torch 1.13's _single_tensor_adamw forms them: in double (Python floats), then
  // rounded to float when they meet a float tensor. The per-element expressions follow its kernels'
  // order of operations, so results agree with PyTorch to the last bit or two.
  const double b1 = cfg_.beta1, b2 = cfg_.beta2, dlr = lr;
  const float decay_mul = static_cast<float>(1.0 - dlr * cfg_.weight_decay);
  const float fb1 = cfg_.beta1, fb2 = cfg_.beta2;
  const float one_minus_b1 = static_cast<float>(1.0 - b1), one_minus_b2 = static_cast<float>(1.0 - b2);
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(t_));
  const double bc2 = 1.0 - std::pow(b2, static_cast<double>(t_));
  const float neg_step_size = static_cast<float>(-(dlr / bc1));
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float eps = cfg_.eps;
  float* m = m_.data();
  float* v = v_.data();
  const int64_t n = static_cast<int64_t>(m_.size());
  // Purely element-wise: every element sees the same operations whatever chunk it falls in.
  parallel_for(n, pool, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float p = params[i];
      if (!decay || decay[i]) p *= decay_mul;
      const float g = grads[i];
      const float mi = m[i] * fb1 + one_minus_b1 * g;
      const float vi = v[i] * fb2 + one_minus_b2 * g * g;
      m[i] = mi;
      v[i] = vi;
      const float denom = std::sqrt(vi) / bc2_sqrt + eps;
      params[i] = p + neg_step_size * mi / denom;
    }
  });
}

float lr_at(int64_t step, float lr_max, float lr_min, int64_t warmup, int64_t total) {
  if (step < 0) step = 0;
  if (step < warmup) return static_cast<float>(static_cast<double>(lr_max) * (step + 1) / warmup);
  const int64_t last = total - 1;  // the step that reaches lr_min
  if (step >= last) return lr_min;
  const double span = static_cast<double>(last - std::max<int64_t>(warmup, 0));
  const double progress = static_cast<double>(step - std::max<int64_t>(warmup, 0)) / span;
  const double cosine = 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  return static_cast<float>(lr_min + (static_cast<double>(lr_max) - lr_min) * cosine);
}

double global_norm(const float* grads, int64_t n, ThreadPool* pool) {
  if (n <= 0) return 0.0;
  // One partial sum per fixed block, then the partials in block order: the same additions in the same
  // order for any thread count. Squares of floats cannot overflow a double; inf and NaN propagate.
  const int64_t n_blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(n_blocks), 0.0);
  auto sum_blocks = [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t end = std::min(n, (b + 1) * kBlock);
      double s = 0.0;
      for (int64_t i = b * kBlock; i < end; ++i) s += static_cast<double>(grads[i]) * grads[i];
      partial[static_cast<size_t>(b)] = s;
    }
  };
  if (!pool || pool->size() <= 1 || n_blocks == 1)
    sum_blocks(0, n_blocks);
  else
    pool->run(n_blocks, [&](int, int64_t b0, int64_t b1) { sum_blocks(b0, b1); });
  double total = 0.0;
  for (double s : partial) total += s;
  return std::sqrt(total);
}

float clip_by_global_norm(float* grads, int64_t n, double norm, float max_norm) {
  // NaN norms compare false and leave the gradients alone: the caller skips such steps anyway.
  // torch.nn.utils.clip_grad_norm_: coefficient max / (norm + 1e-6), applied when below 1.
  if (max_norm <= 0.0f || !(norm > 0.0)) return 1.0f;
  const double coef = static_cast<double>(max_norm) / (norm + 1e-6);
  if (!(coef < 1.0)) return 1.0f;
  const float factor = static_cast<float>(coef);
  for (int64_t i = 0; i < n; ++i) grads[i] *= factor;
  return factor;
}

bool LossScaler::update(bool grads_finite) {
  // torch.cuda.amp.GradScaler with backoff_factor 0.5 and growth_factor 2.
  if (!grads_finite) {
    scale_ *= 0.5f;
    good_ = 0;
    return false;
  }
  if (++good_ >= interval_) {
    // Stays finite: an infinite scale would turn every loss into inf.
    if (scale_ <= std::numeric_limits<float>::max() / 2.0f) scale_ *= 2.0f;
    good_ = 0;
  }
  return true;
}

}  // namespace moe::train
