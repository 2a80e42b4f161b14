// moe.cpp public API: what a program that embeds the engine includes. Everything else under src/
// is internal and may change.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace moe {

struct GenerationParams {
  int64_t max_tokens = 128;
  float temperature = 0.8f;  // 0: greedy
  int32_t top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  float repeat_penalty = 1.0f;
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  uint64_t seed = 0;
};

// A loaded model ready to generate. Not safe for concurrent calls on one instance.
class Engine {
 public:
  // Loads a model file (GGUF). threads <= 0 uses every core. Throws std::runtime_error (a
  // moe::Error) naming the file and the problem.
  static std::unique_ptr<Engine> open(const std::string& model_path, int threads = 0);
  virtual ~Engine() = default;

  virtual std::vector<int32_t> tokenize(const std::string& text, bool add_bos) const = 0;
  virtual std::string detokenize(const std::vector<int32_t>& ids) const = 0;

  // Generates a continuation of prompt; on_text (optional) receives the text as it is produced
  // and may return false to stop. Returns the whole generated text.
  virtual std::string generate(const std::string& prompt, const GenerationParams& params,
                               const std::function<bool(const std::string&)>& on_text = {}) = 0;
};

}  // namespace moe
