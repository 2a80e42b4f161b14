// Key/value cache of one sequence: per layer, a row of k_width keys and v_width values for each
// position. Architectures choose the widths (GQA: n_head_kv * head_dim; MLA stores its latent).
#pragma once

#include <cstdint>
#include <vector>

#include "core/error.h"

namespace moe {

class KvCache {
 public:
  KvCache(int64_t n_layer, int64_t n_ctx, int64_t k_width, int64_t v_width)
      : n_ctx_(n_ctx), k_width_(k_width), v_width_(v_width), layers_(n_layer) {
    for (Layer& l : layers_) {
      l.k.assign(static_cast<size_t>(n_ctx * k_width), 0.0f);
      l.v.assign(static_cast<size_t>(n_ctx * v_width), 0.0f);
    }
  }

  int64_t n_ctx() const { return n_ctx_; }
  int64_t k_width() const { return k_width_; }
  int64_t v_width() const { return v_width_; }
  size_t bytes() const { return layers_.size() * static_cast<size_t>(n_ctx_ * (k_width_ + v_width_)) * sizeof(float); }

  // [n_ctx, k_width] and [n_ctx, v_width] of layer il.
  float* k(int64_t il, int64_t pos) { return layers_[il].k.data() + pos * k_width_; }
  float* v(int64_t il, int64_t pos) { return layers_[il].v.data() + pos * v_width_; }
  const float* k(int64_t il, int64_t pos) const { return layers_[il].k.data() + pos * k_width_; }
  const float* v(int64_t il, int64_t pos) const { return layers_[il].v.data() + pos * v_width_; }

  void check_room(int64_t pos0, int64_t n_tokens) const {
    MOE_CHECK(pos0 >= 0 && n_tokens >= 0 && pos0 + n_tokens <= n_ctx_, "context full: ", pos0 + n_tokens,
              " tokens do not fit in a context of ", n_ctx_);
  }

 private:
  struct Layer {
    std::vector<float> k;
    std::vector<float> v;
  };
  int64_t n_ctx_;
  int64_t k_width_;
  int64_t v_width_;
  std::vector<Layer> layers_;
};

}  // namespace moe
