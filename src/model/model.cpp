#include "model/model.h"

#include "core/error.h"
#include "model/deepseek2.h"
#include "model/hf_model.h"
#include "model/llama.h"
#include "model/qwen2.h"

namespace moe {

namespace {

// The one table of architectures: adding one means a file under src/model/ and a line here.
constexpr ArchEntry kArchs[] = {
    {"llama", &make_llama},
    {"qwen2", &make_qwen2},
    {"deepseek2", &make_deepseek2},
};

}  // namespace

std::span<const ArchEntry> known_archs() { return kArchs; }

void Model::forward_batch(std::span<const SeqBatch> seqs, float* logits, ThreadPool& pool,
                          ForwardStats*) const {
  for (const SeqBatch& s : seqs) {
    MOE_CHECK(s.cache != nullptr, "forward_batch: a sequence has no cache");
    forward(s.tokens, s.pos0, *s.cache, s.all_logits, logits, pool);
    const int64_t n_out = s.all_logits ? static_cast<int64_t>(s.tokens.size()) : (s.tokens.empty() ? 0 : 1);
    logits += n_out * config_.n_vocab;
  }
}

LoadedModel load_model(const std::string& path) {
  LoadedModel m;
  // A Hugging Face directory reads as the GGUF llama.cpp's converter would make of it.
  m.file = is_hf_model_dir(path) ? open_hf_model(path) : GgufFile::open(path);
  const std::string arch = m.file->get_string("general.architecture", "");
  MOE_CHECK(!arch.empty(), path, ": metadata key 'general.architecture' is missing");
  for (const ArchEntry& e : known_archs()) {
    if (arch == e.name) {
      m.model = e.factory(*m.file);
      break;
    }
  }
  if (!m.model) {
    std::string names;
    for (const ArchEntry& e : known_archs()) names += std::string(names.empty() ? "" : ", ") + e.name;
    fail(path, ": architecture '", arch, "' is not supported (known: ", names, ")");
  }
  m.tokenizer = tokenizer_from_gguf(*m.file);
  MOE_CHECK(m.tokenizer->n_vocab() == m.model->config().n_vocab, path, ": the tokenizer has ",
            m.tokenizer->n_vocab(), " tokens but the model's vocabulary is ", m.model->config().n_vocab);
  return m;
}

}  // namespace moe
