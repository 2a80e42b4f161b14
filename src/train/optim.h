// AdamW, the learning-rate schedule, gradient clipping and the fp16 loss scaler of `moe train`.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/thread_pool.h"

namespace moe::train {

struct AdamWConfig {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;
};

// PyTorch's torch.optim.AdamW (decoupled weight decay), step t counted from 1:
//   p -= lr * wd * p   (only where decay[i] is true: matrices, not norms, biases or embeddings... see
//                        the caller; the mask is per element so tensors can be mixed in one buffer)
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// Results are bit-identical whatever the thread count.
class AdamW {
 public:
  // n parameters; state starts at zero, t = 0.
  AdamW(int64_t n, AdamWConfig cfg);
  // One update of params [n] with grads [n]; decay [n] (nullable = decay everything).
  void step(float* params, const float* grads, const uint8_t* decay, float lr, ThreadPool* pool);
  int64_t t() const { return t_; }
  // The state for checkpoints (m, v and t), restored exactly.
  std::vector<float>& m() { return m_; }
  std::vector<float>& v() { return v_; }
  void set_t(int64_t t) { t_ = t; }
  const AdamWConfig& config() const { return cfg_; }

 private:
  AdamWConfig cfg_;
  std::vector<float> m_, v_;
  int64_t t_ = 0;
};

// Linear warmup from 0 to lr_max over `warmup` steps (step s in [0, warmup): lr_max * (s + 1) / warmup),
// then cosine decay to lr_min at step total - 1, lr_min afterwards.
float lr_at(int64_t step, float lr_max, float lr_min, int64_t warmup, int64_t total);

// sqrt(sum g^2) over grads [n], summed in double in a thread-count-independent order; returns +inf or
// NaN when any gradient is not finite.
double global_norm(const float* grads, int64_t n, ThreadPool* pool);
// PyTorch's clip_grad_norm_: scales grads by max_norm / (norm + 1e-6) when that is below 1 (max_norm <= 0:
// no clipping). Returns the factor.
float clip_by_global_norm(float* grads, int64_t n, double norm, float max_norm);

// Dynamic loss scaling for fp16 (PyTorch's GradScaler): the loss is multiplied by scale() before the
// backward; after it, update(finite) halves the scale and reports "skip" when any gradient overflowed,
// and doubles it after growth_interval finite steps in a row.
class LossScaler {
 public:
  explicit LossScaler(float init = 65536.0f, int64_t growth_interval = 2000)
      : scale_(init), interval_(growth_interval) {}
  float scale() const { return scale_; }
  // Returns true when the step should be applied, false when it must be skipped.
  bool update(bool grads_finite);
  int64_t good_steps() const { return good_; }
  void restore(float scale, int64_t good) {
    scale_ = scale;
    good_ = good;
  }

 private:
  float scale_;
  int64_t interval_;
  int64_t good_ = 0;
};

}  // namespace moe::train
