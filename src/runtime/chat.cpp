#include "runtime/chat.h"

#include "core/error.h"

namespace moe {

ChatFormatter::ChatFormatter(const LoadedModel& m, const std::string& template_source) {
  std::string source = template_source;
  if (source.empty()) {
    const GgufValue* v = m.file->find("tokenizer.chat_template");
    MOE_CHECK(v != nullptr && v->type() == GgufType::STRING, m.file->name(),
              ": the model has no chat template (tokenizer.chat_template)");
    source = v->as_string();
  }
  const Tokenizer& tok = *m.tokenizer;
  if (tok.bos_id() >= 0) bos_ = tok.token_text(tok.bos_id());
  if (tok.eos_id() >= 0) eos_ = tok.token_text(tok.eos_id());
  r1_ = source.find("<｜Assistant｜>") != std::string::npos && source.find("</think>") != std::string::npos;
  tmpl_ = std::make_unique<ChatTemplate>(std::move(source));
}

std::string ChatFormatter::prompt_for_reply(const nlohmann::ordered_json& messages) const {
  // Templates with a thinking switch (Qwen3, llama.cpp's R1 distills) default to thinking, as
  // llama.cpp passes it; templates without one ignore the variable.
  const nlohmann::ordered_json extra = {{"enable_thinking", true}};
  std::string p = render_chat(*tmpl_, messages, /*add_generation_prompt=*/true, bos_, eos_, extra);
  if (r1_ && (p.size() < 8 || p.compare(p.size() - 8, 8, "<think>\n") != 0)) p += "<think>\n";
  return p;
}

std::optional<SamplingParams> ChatFormatter::recommended_sampling() const {
  if (!r1_) return std::nullopt;
  SamplingParams s;
  s.temperature = 0.6f;
  s.top_p = 0.95f;
  s.top_k = 0;
  s.min_p = 0.0f;
  return s;
}

std::vector<int32_t> tokenize_chat_prompt(const Tokenizer& tok, const std::string& prompt,
                                          const nlohmann::ordered_json& messages) {
  std::vector<int32_t> ids;
  const auto append = [&](std::string_view text, bool special) {
    if (text.empty()) return;
    const std::vector<int32_t> part = tok.encode(text, special);
    ids.insert(ids.end(), part.begin(), part.end());
  };
  // Message contents appear in the rendered prompt in order (templates may drop some, e.g. R1
  // drops earlier reasoning); find each after the previous one.
  size_t pos = 0;
  for (const auto& msg : messages) {
    if (!msg.contains("content") || !msg["content"].is_string()) continue;
    const std::string& content = msg["content"].get_ref<const std::string&>();
    if (content.empty()) continue;
    const size_t at = prompt.find(content, pos);
    if (at == std::string::npos) continue;
    append(std::string_view(prompt).substr(pos, at - pos), true);
    append(content, false);
    pos = at + content.size();
  }
  append(std::string_view(prompt).substr(pos), true);
  const bool has_bos = !ids.empty() && ids[0] == tok.bos_id();
  if (tok.add_bos() && tok.bos_id() >= 0 && !has_bos) ids.insert(ids.begin(), tok.bos_id());
  return ids;
}

}  // namespace moe
