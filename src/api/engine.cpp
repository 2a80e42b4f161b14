#include <moe/moe.h>

#include "model/model.h"
#include "runtime/generator.h"

namespace moe {

namespace {

class EngineImpl : public Engine {
 public:
  EngineImpl(const std::string& path, int threads) : model_(load_model(path)), pool_(threads) {}

  std::vector<int32_t> tokenize(const std::string& text, bool add_bos) const override {
    std::vector<int32_t> ids;
    if (add_bos && model_.tokenizer->bos_id() >= 0) ids.push_back(model_.tokenizer->bos_id());
    const std::vector<int32_t> body = model_.tokenizer->encode(text, true);
    ids.insert(ids.end(), body.begin(), body.end());
    return ids;
  }

  std::string detokenize(const std::vector<int32_t>& ids) const override { return model_.tokenizer->decode(ids); }

  std::string generate(const std::string& prompt, const GenerationParams& p,
                       const std::function<bool(const std::string&)>& on_text) override {
    GenerateOptions opts;
    opts.n_predict = p.max_tokens;
    opts.sampling.temperature = p.temperature;
    opts.sampling.top_k = p.top_k;
    opts.sampling.top_p = p.top_p;
    opts.sampling.min_p = p.min_p;
    opts.sampling.repeat_penalty = p.repeat_penalty;
    opts.sampling.frequency_penalty = p.frequency_penalty;
    opts.sampling.presence_penalty = p.presence_penalty;
    opts.sampling.seed = p.seed;
    StreamDecoder dec(*model_.tokenizer);
    if (!prompt.empty()) dec.push_context();
    std::string text;
    generate_tokens(prompt, opts, [&](int32_t id) {
      const std::string piece = dec.push(id);
      text += piece;
      return piece.empty() || !on_text || on_text(piece);
    });
    const std::string rest = dec.flush();
    text += rest;
    if (!rest.empty() && on_text) on_text(rest);
    return text;
  }

 private:
  void generate_tokens(const std::string& prompt, const GenerateOptions& opts,
                       const std::function<bool(int32_t)>& on_token) {
    moe::generate(model_, tokenize_prompt(*model_.tokenizer, prompt, true), opts, pool_, on_token);
  }

  LoadedModel model_;
  ThreadPool pool_;
};

}  // namespace

std::unique_ptr<Engine> Engine::open(const std::string& model_path, int threads) {
  return std::make_unique<EngineImpl>(model_path, threads);
}

}  // namespace moe
