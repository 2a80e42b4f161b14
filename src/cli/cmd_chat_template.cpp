// `moe chat-template`: renders a conversation with the model's own chat template.
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/load.h"

namespace moe::cli {

namespace {

struct ChatTemplateArgs {
  std::string tokenizer;
  std::string messages;
  std::string template_file;
  std::string extra;
  bool no_generation_prompt = false;
  bool ids = false;
};

std::string read_text(const std::string& path) {
  if (path == "-") return read_stdin();
  std::ifstream f(path, std::ios::binary);
  MOE_CHECK(f, "cannot read ", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

nlohmann::ordered_json parse_json(const std::string& text, const std::string& what) {
  try {
    return nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(what, ": invalid JSON: ", e.what());
  }
}

void run_chat_template(const ChatTemplateArgs& a) {
  const LoadedTokenizer lt = load_tokenizer(a.tokenizer);
  std::string source = a.template_file.empty() ? lt.chat_template : read_text(a.template_file);
  MOE_CHECK(!source.empty(), a.tokenizer,
            ": no chat template (GGUF tokenizer.chat_template or tokenizer_config.json); give --template FILE");
  const ChatTemplate tmpl(std::move(source));

  // FILE.json: a list of messages, or an object {"messages": [...], "add_generation_prompt": ...,
  // any other template variable such as "tools" or "enable_thinking"}.
  nlohmann::ordered_json doc = parse_json(read_text(a.messages), a.messages);
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
  nlohmann::ordered_json messages;
  bool add_generation_prompt = !a.no_generation_prompt;
  if (doc.is_array()) {
    messages = std::move(doc);
  } else {
    MOE_CHECK(doc.is_object() && doc.contains("messages"), a.messages,
              ": expected a list of messages or an object with \"messages\"");
    for (auto& [key, value] : doc.items()) {
      if (key == "messages") {
        messages = value;
      } else if (key == "add_generation_prompt") {
        MOE_CHECK(value.is_boolean(), a.messages, ": add_generation_prompt must be true or false");
        add_generation_prompt = value.get<bool>() && !a.no_generation_prompt;
      } else {
        extra[key] = value;
      }
    }
  }
  MOE_CHECK(messages.is_array(), a.messages, ": messages must be a list");
  for (size_t i = 0; i < messages.size(); ++i)
    MOE_CHECK(messages[i].is_object() && messages[i].contains("role") && messages[i]["role"].is_string(),
              a.messages, ": message ", i, " needs a string \"role\"");
  if (!a.extra.empty()) {
    const nlohmann::ordered_json more = parse_json(a.extra, "--extra");
    MOE_CHECK(more.is_object(), "--extra: expected a JSON object");
    for (auto& [key, value] : more.items()) extra[key] = value;
  }
  const std::string prompt = render_chat(tmpl, messages, add_generation_prompt, lt.bos_token, lt.eos_token, extra);
  if (a.ids) {
    const std::vector<int32_t> ids = lt.tokenizer->encode(prompt, /*parse_special=*/true);
    std::string out = "[";
    for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
    std::printf("%s]\n", out.c_str());
    return;
  }
  std::fwrite(prompt.data(), 1, prompt.size(), stdout);
}

}  // namespace

void add_chat_template_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("chat-template", "Render a conversation with the model's chat template");
  auto a = std::make_shared<ChatTemplateArgs>();
  cmd->add_option("--tokenizer,-m,--model", a->tokenizer,
                  "a GGUF file, a tokenizer.json (with tokenizer_config.json beside it) or a model directory")
      ->required();
  cmd->add_option("--messages", a->messages,
                  "JSON file (- for stdin): [{\"role\", \"content\"}, ...] or {\"messages\": [...], ...vars}")
      ->required();
  cmd->add_option("--template", a->template_file, "use this Jinja template file instead of the model's");
  cmd->add_option("--extra", a->extra, "more template variables as a JSON object, e.g. '{\"enable_thinking\": false}'");
  cmd->add_flag("--no-generation-prompt", a->no_generation_prompt,
                "do not end with the assistant's turn opener (add_generation_prompt=false)");
  cmd->add_flag("--ids", a->ids, "print the prompt's token ids (special tokens parsed) instead of the text");
  cmd->callback([a] { run_chat_template(*a); });
}

}  // namespace moe::cli
