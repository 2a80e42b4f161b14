#include "serve_fixtures.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>
#include <vector>

#include "core/error.h"
#include "formats/gguf.h"
#include "model/presets.h"
#include "testdata.h"
#include "tokenizer/tokenizer.h"

namespace moe::test {

void write_script_model(const std::string& path, const std::string& script, bool loop,
                        const std::string& chat_template) {
  const auto vocab = GgufFile::open(testdata("models/stories260K.gguf"));
  const auto tok = tokenizer_from_gguf(*vocab);
  const std::vector<int32_t> ids = tok->encode(script, false);
  MOE_CHECK(!ids.empty(), "script model: empty script");
  MOE_CHECK(std::set<int32_t>(ids.begin(), ids.end()).size() == ids.size(),
            "script model: the script's tokens repeat, so the next token would be ambiguous");
  const int64_t n_vocab = tok->n_vocab(), n_embd = n_vocab;  // one-hot residual stream

  ModelConfig c = reduced(find_preset("r1-distill-llama-8b").config);
  c.n_vocab = n_vocab;
  c.n_embd = n_embd;
  c.n_layer = 1;
  c.n_head = c.n_head_kv = 4;
  c.head_dim_k = c.head_dim_v = c.rope.n_rot = n_embd / 4;
  c.rope.freq_factors.clear();
  c.n_ff = 32;
  c.n_ctx_train = 4096;
  RandomModelOptions opt;
  opt.tokenizer_source = vocab.get();
  opt.chat_template = chat_template;
  const std::string tmp = path + ".random";
  write_random_model(c, opt, tmp);

  // The embedding is the identity and the blocks add nothing (zero output projections), so the
  // final norm sees a scaled one-hot of the current token; the output head maps it to its successor.
  std::vector<int32_t> next(static_cast<size_t>(n_vocab), ids[0]);
  for (size_t i = 0; i + 1 < ids.size(); ++i) next[ids[i]] = ids[i + 1];
  next[ids.back()] = loop ? ids[0] : tok->eos_id();
  const auto src = GgufFile::open(tmp);
  GgufWriter w;
  for (const auto& [k, v] : src->metadata())
    if (k != "general.alignment") w.set(k, v);
  for (const GgufTensorInfo& t : src->tensors()) {
    std::vector<int64_t> ne(t.ne, t.ne + t.n_dims);
    std::vector<float> data(t.n_bytes / sizeof(float));
    MOE_CHECK(t.type == DType::F32, "script model: expected f32 tensors");
    std::memcpy(data.data(), src->tensor_data(t), t.n_bytes);
    if (t.name == "token_embd.weight") {
      std::fill(data.begin(), data.end(), 0.0f);
      for (int64_t v = 0; v < n_vocab; ++v) data[v * n_embd + v] = 1.0f;
    } else if (t.name == "output.weight") {
      std::fill(data.begin(), data.end(), 0.0f);
      for (int64_t v = 0; v < n_vocab; ++v) data[next[v] * n_embd + v] = 1.0f;
    } else if (t.name.find("attn_output") != std::string::npos ||
               t.name.find("ffn_down") != std::string::npos) {
      std::fill(data.begin(), data.end(), 0.0f);
    }
    w.add_tensor(t.name, t.type, ne, data.data(), data.size() * sizeof(float));
  }
  w.write(path);
  std::filesystem::remove(tmp);
}

}  // namespace moe::test
