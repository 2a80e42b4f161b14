// Chat templates: a conversation rendered into prompt text exactly as Hugging Face transformers'
// apply_chat_template renders it with the model's Jinja template.
//
// Approach: a small Jinja2 interpreter (src/tokenizer/jinja/: lexer, parser to a syntax tree,
// evaluator) rather than per-family renderers picked by recognising the template. Templates in
// the wild differ in small ways (DeepSeek's R1 vs V3 vs V3.1, distills patched by the community,
// Qwen2.5 vs Qwen3 tool calling); an interpreter renders any of them, including edited ones,
// byte for byte, and an unsupported construct fails loudly instead of silently producing a
// different prompt. The interpreter follows Python Jinja2 3.1 with transformers' environment:
// ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True), loopcontrols, the
// {% generation %} tag, tojson as json.dumps(ensure_ascii=False), raise_exception and
// strftime_now. Undefined values behave like Jinja2's default Undefined: printed as "", falsy,
// `is defined` false, and an error when an attribute of one is read or it is used in arithmetic.
//
// Known differences from Python Jinja2, none of which the supported model templates rely on:
// filters that yield generators there (map, select, reject, unique, ...) and range() give lists,
// so `tools | map(attribute='function') | tojson` works as in llama.cpp and @huggingface/jinja;
// results of |safe and |escape are plain strings (no Markup escaping when concatenated with +);
// integers are 64-bit (overflow is an error); case mapping covers Latin, Greek and Cyrillic;
// recursive for loops, *args/**kwargs in calls and include/import/extends/block are rejected.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace moe {

class ChatTemplate {
 public:
  // Parses the template; throws moe::Error naming line and column on syntax errors (including
  // unknown filters and tests, which Jinja2 also rejects when compiling).
  explicit ChatTemplate(std::string source);

  // Renders with the variables of `context` (a JSON object: messages, add_generation_prompt,
  // bos_token, eos_token, and any extra such as tools or enable_thinking). Throws moe::Error on
  // runtime errors (with the line); raise_exception(msg) in the template throws moe::Error whose
  // what() is exactly msg. Hostile templates end in moe::Error at the interpreter's limits
  // (jinja::Limits: nesting depth, work, output and value sizes); rendering needs at most about
  // 1 MiB of stack. Thread-safe: concurrent renders of one ChatTemplate share nothing mutable.
  std::string render(const nlohmann::ordered_json& context) const;

  const std::string& source() const { return source_; }

 private:
  struct Program;
  std::string source_;
  std::shared_ptr<const Program> program_;
};

// Renders a conversation as apply_chat_template does: messages, add_generation_prompt,
// bos_token, eos_token, tools and documents (None unless given in extra, as transformers passes
// them), then every key of `extra` (enable_thinking, tools, ...), which may override the others.
std::string render_chat(const ChatTemplate& t, const nlohmann::ordered_json& messages,
                        bool add_generation_prompt, const std::string& bos_token,
                        const std::string& eos_token, const nlohmann::ordered_json& extra = {});

// The chat template and special-token texts of a tokenizer_config.json. bos_token/eos_token may
// be strings, {"content": ...} objects (AddedToken) or null (empty string); chat_template may be
// a string or a list of {"name", "template"} (the one named "default" is taken). Throws
// moe::Error when the file cannot be read or has no chat template.
struct TokenizerConfigTemplate {
  std::string chat_template;
  std::string bos_token;
  std::string eos_token;
};
TokenizerConfigTemplate read_tokenizer_config(const std::string& path);

}  // namespace moe
