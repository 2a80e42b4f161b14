#include "tokenizer/chat_template.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "core/error.h"
#include "tokenizer/jinja/evaluator.h"
#include "tokenizer/jinja/lexer.h"
#include "tokenizer/jinja/parser.h"

namespace moe {

struct ChatTemplate::Program {
  jinja::Body body;
};

ChatTemplate::ChatTemplate(std::string source) : source_(std::move(source)) {
  auto program = std::make_shared<Program>();
  program->body = jinja::parse(jinja::tokenize(source_));
  program_ = std::move(program);
}

std::string ChatTemplate::render(const nlohmann::ordered_json& context) const {
  MOE_CHECK(context.is_object(), "chat template context must be a JSON object");
  jinja::Evaluator ev(program_->body);
  return ev.render(jinja::from_json(context));
}

std::string render_chat(const ChatTemplate& t, const nlohmann::ordered_json& messages,
                        bool add_generation_prompt, const std::string& bos_token,
                        const std::string& eos_token, const nlohmann::ordered_json& extra) {
  MOE_CHECK(messages.is_array(), "chat messages must be a JSON array");
  MOE_CHECK(extra.is_null() || extra.is_object(), "extra chat template variables must be a JSON object");
  nlohmann::ordered_json ctx = nlohmann::ordered_json::object();
  ctx["messages"] = messages;
  ctx["tools"] = nullptr;
  ctx["documents"] = nullptr;
  ctx["add_generation_prompt"] = add_generation_prompt;
  ctx["bos_token"] = bos_token;
  ctx["eos_token"] = eos_token;
  if (extra.is_object())
    for (const auto& [k, v] : extra.items()) ctx[k] = v;
  return t.render(ctx);
}

namespace {

std::string token_text(const nlohmann::ordered_json& j, const char* key, const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return "";
  const auto& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  fail(path, ": ", key, " is neither a string nor an object with \"content\"");
}

}  // namespace

TokenizerConfigTemplate read_tokenizer_config(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MOE_CHECK(f, "cannot read ", path);
  std::stringstream ss;
  ss << f.rdbuf();
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": invalid JSON: ", e.what());
  }
  MOE_CHECK(j.is_object(), path, ": expected a JSON object");
  TokenizerConfigTemplate out;
  out.bos_token = token_text(j, "bos_token", path);
  out.eos_token = token_text(j, "eos_token", path);
  MOE_CHECK(j.contains("chat_template") && !j["chat_template"].is_null(), path, ": no chat_template");
  const auto& ct = j["chat_template"];
  if (ct.is_string()) {
    out.chat_template = ct.get<std::string>();
  } else if (ct.is_array()) {
    for (const auto& entry : ct) {
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
          entry["template"].is_string())
        out.chat_template = entry["template"].get<std::string>();
    }
    MOE_CHECK(!out.chat_template.empty(), path, ": chat_template list has no template named \"default\"");
  } else {
    fail(path, ": chat_template must be a string or a list of {name, template}");
  }
  return out;
}

}  // namespace moe
