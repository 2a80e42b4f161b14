// Tokenizer metadata of a Hugging Face model directory as convert_hf_to_gguf.py writes it for a
// byte-level BPE (_set_vocab_gpt2, get_vocab_base) and gguf-py's SpecialVocab.
#include "model/hf_vocab.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "tokenizer/hf_tokenizer.h"

namespace moe {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

json read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MOE_CHECK(in.good(), path, ": cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    fail(path, ": not valid JSON: ", e.what());
  }
}

// Python truthiness of a JSON value (None, "", {}, [], 0 and false are false).
bool truthy(const json* v) {
  if (v == nullptr || v->is_null()) return false;
  if (v->is_boolean()) return v->get<bool>();
  if (v->is_string() || v->is_object() || v->is_array()) return !v->empty();
  if (v->is_number()) return v->get<double>() != 0.0;
  return true;
}

// Metadata in insertion order; setting a key again replaces its value in place.
class Meta {
 public:
  void set(const std::string& key, GgufValue v) {
    for (auto& kv : kv_) {
      if (kv.first == key) {
        kv.second = std::move(v);
        return;
      }
    }
    kv_.emplace_back(key, std::move(v));
  }
  void u32(const std::string& key, int64_t v) { set(key, GgufValue::u32(static_cast<uint32_t>(v))); }
  std::vector<std::pair<std::string, GgufValue>> take() { return std::move(kv_); }

 private:
  std::vector<std::pair<std::string, GgufValue>> kv_;
};

// Pattern text with CR and LF spelled as escapes, so that a tokenizer.json holding the raw
// characters and one holding "\\r\\n" compare equal.
std::string canon(std::string s) {
  std::string out;
  for (char ch : s) {
    if (ch == '\r')
      out += "\\r";
    else if (ch == '\n')
      out += "\\n";
    else
      out += ch;
  }
  return out;
}

const char* const kHfLlama3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kHfQwen2 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kHfDeepseekV3 =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
    " ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kCjk =
    "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+";  // [一-龥ࠀ-一가-퟿]+
const char* const kCjkKana =
    "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+";  // [一-龥぀-ゟ゠-ヿ]+
const char* const kDsLlmPunct =
    "\\s?[!-/:-~\xef\xbc\x81-\xef\xbc\x8f\xef\xbc\x9a-\xef\xbd\x9e\xe2\x80\x98-\xe2\x80\x9f\xe3\x80\x80-"
    "\xe3\x80\x82]+";  // \s?[!-/:-~！-／：-～‘-‟　-。]+

// The regex steps of a byte-level pre-tokenizer, flattened; Digits becomes the regex llama.cpp
// uses for it. Returns false for shapes llama.cpp has no pre-tokenizer for.
bool split_patterns(const json& pre, std::vector<std::string>* pats, bool* byte_level_regex) {
  std::vector<const json*> steps;
  if (pre.is_object() && pre.value("type", "") == "Sequence") {
    const auto it = pre.find("pretokenizers");
    if (it == pre.end() || !it->is_array()) return false;
    for (const json& s : *it) steps.push_back(&s);
  } else {
    steps.push_back(&pre);
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    const json& s = *steps[i];
    if (!s.is_object() || !s.contains("type") || !s["type"].is_string()) return false;
    const std::string type = s["type"].get<std::string>();
    const bool last = i + 1 == steps.size();
    if (type == "ByteLevel") {
      if (!last || s.value("add_prefix_space", true)) return false;
      *byte_level_regex = s.value("use_regex", true);
      return true;
    }
    if (type == "Split") {
      const auto p = s.find("pattern");
      if (p == s.end() || !p->is_object() || !p->contains("Regex") || !(*p)["Regex"].is_string())
        return false;
      if (s.value("behavior", "") != "Isolated" || s.value("invert", false)) return false;
      pats->push_back(canon((*p)["Regex"].get<std::string>()));
    } else if (type == "Digits") {
      pats->push_back(s.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+");
    } else {
      return false;
    }
  }
  return false;  // no ByteLevel step: not a byte-level BPE
}

// tokenizer.ggml.pre for a tokenizer.json, by its pre-tokenizer regexes (the converter hashes
// the token ids of a test string instead; the regexes are what that hash stands for).
std::string detect_pre(const json& tj, const std::string& where, bool has_r1_bos) {
  std::vector<std::string> p;
  bool byte_regex = false;
  const auto pre = tj.find("pre_tokenizer");
  const bool ok = pre != tj.end() && split_patterns(*pre, &p, &byte_regex);
  auto is = [&](std::vector<std::string> want) {
    for (std::string& w : want) w = canon(w);
    return ok && !byte_regex && p == want;
  };
  if (ok && byte_regex && p.empty()) return "gpt-2";
  if (is({kHfLlama3})) return "llama-bpe";
  if (is({kHfQwen2})) return has_r1_bos ? "deepseek-r1-qwen" : "qwen2";
  if (is({"\\p{N}{1,3}", kCjkKana, kHfDeepseekV3})) return "deepseek-v3";
  if (is({"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", kCjk, "\\p{N}"})) return "deepseek-coder";
  // deepseek-llm: its cased-letter class is long; match the other steps exactly and its frame.
  if (ok && !byte_regex && p.size() == 6 && p[0] == canon("[\r\n]") && p[1].starts_with("\\s?[A-Za-z") &&
      p[1].ends_with("]+") && p[2] == kDsLlmPunct && p[3] == "\\s+$" && p[4] == kCjk && p[5] == "\\p{N}+")
    return "deepseek-llm";
  fail(where,
       ": the pre-tokenizer is not one llama.cpp knows (recognised: deepseek-v3, qwen2, "
       "deepseek-r1-qwen, llama-bpe, deepseek-llm, deepseek-coder, gpt-2): ",
       pre == tj.end() ? std::string("none") : pre->dump().substr(0, 300));
}

// gguf-py's SpecialVocab: special token ids (tokenizer_config.json names looked up among the
// added tokens, then config.json *_token_id), add_*_token flags (TemplateProcessing, then
// tokenizer_config.json) and the chat template.
void add_special_vocab(Meta& m, const std::string& dir, const json& tj, json tc, int64_t n_vocab) {
  std::vector<std::string> types = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
  std::vector<std::pair<std::string, int64_t>> ids;
  std::vector<std::pair<std::string, bool>> add;
  auto set_add = [&add](const std::string& t, bool v) {
    for (auto& [k, x] : add)
      if (k == t) return void(x = v);
    add.emplace_back(t, v);
  };
  auto set_id = [&](const std::string& t, const json& v, const std::string& src) {
    if (!v.is_number_integer()) return;
    const int64_t id = v.get<int64_t>();
    MOE_CHECK(id >= 0 && id < n_vocab, dir, ": ", src, ": ", t, " token id ", id,
              " is outside the vocabulary of ", n_vocab);
    for (const auto& [k, x] : ids)
      if (k == t) return;
    ids.emplace_back(t, id);
  };
  const bool have_tc = tc.is_object() && !tc.empty();
  auto tc_get = [&](const std::string& k) -> json { return have_tc && tc.contains(k) ? tc[k] : json(); };

  json special_bos = tc_get("bos_token"), special_cls = tc_get("cls_token");
  json special_eos = tc_get("eos_token"), special_sep = tc_get("sep_token");
  if (!truthy(&special_bos) && truthy(&special_cls) && have_tc) tc["bos_token"] = special_bos = special_cls;
  if (!truthy(&special_eos) && truthy(&special_sep) && have_tc) tc["eos_token"] = special_eos = special_sep;
  if (const auto pp = tj.find("post_processor"); pp != tj.end() && truthy(&*pp) && pp->is_object()) {
    std::vector<json> procs;
    if (pp->contains("processors") && (*pp)["processors"].is_array())
      procs.assign((*pp)["processors"].begin(), (*pp)["processors"].end());
    else
      procs.push_back(*pp);
    auto special_id = [](const json& item) -> json {
      if (item.is_object() && item.contains("SpecialToken") && item["SpecialToken"].is_object())
        return item["SpecialToken"].value("id", json());
      return json();
    };
    auto seq_id = [](const json& item) -> json {
      if (item.is_object() && item.contains("Sequence") && item["Sequence"].is_object())
        return item["Sequence"].value("id", json());
      return json();
    };
    for (const json& p : procs) {
      if (!p.is_object()) continue;
      const std::string type = p.value("type", "");
      if (type == "RobertaProcessing") {
        set_add("bos", true);
        set_add("eos", true);
        set_add("sep", true);
        continue;
      }
      if (type != "TemplateProcessing") continue;
      const json single = p.value("single", json::array()), pair = p.value("pair", json::array());
      json first, last;
      if (single.is_array() && single.size() > 1) {
        first = special_id(single.front());
        if (truthy(&first)) {
          if (!have_tc) {
            special_bos = first;
          } else if (first != special_bos && first != special_cls) {
            if (!truthy(&special_bos)) tc["bos_token"] = special_bos = first;
            if (!truthy(&special_cls)) tc["cls_token"] = special_cls = first;
          }
          set_add("bos", first == special_bos || first == special_cls);
        }
        last = special_id(single.back());
        if (truthy(&last)) {
          if (!have_tc) {
            special_eos = last;
          } else if (last != special_eos) {
            for (const char* extra : {"eot", "eom"}) {
              if (std::find(types.begin(), types.end(), extra) == types.end()) {
                types.push_back(extra);
                tc[std::string(extra) + "_token"] = special_eos;
                break;
              }
            }
            tc["eos_token"] = special_eos = last;
          }
          set_add("eos", last == special_eos);
        }
      }
      if (pair.is_array() && !pair.empty()) {
        const size_t start = truthy(&first) && special_id(pair.front()) == first ? 1 : 0;
        const size_t stop = truthy(&last) && special_id(pair.back()) == last ? pair.size() - 1 : pair.size();
        if (start < stop) {
          std::vector<json> mid(pair.begin() + static_cast<std::ptrdiff_t>(start),
                                pair.begin() + static_cast<std::ptrdiff_t>(stop));
          if (seq_id(mid.front()) == "A" && seq_id(mid.back()) == "B" && mid.size() > 2) {
            mid = std::vector<json>(mid.begin() + 1, mid.end() - 1);
            bool add_sep = false;
            json entry = special_id(mid[0]);
            if (truthy(&entry) && (entry == special_sep || entry == special_eos) && !truthy(&last))
              add_sep = true;
            if (mid.size() == 2) {
              entry = special_id(mid[1]);
              if (truthy(&entry) && (entry == special_sep || entry == special_eos)) add_sep = true;
            }
            set_add("sep", add_sep);
            if (add_sep && !truthy(&special_sep) && have_tc) tc["sep_token"] = special_eos;
          }
        }
      }
    }
  }

  std::optional<json> chat_template;
  if (have_tc) {
    const fs::path jinja = fs::path(dir) / "chat_template.jinja",
                   cjson = fs::path(dir) / "chat_template.json";
    std::error_code ec;
    if (fs::is_regular_file(jinja, ec)) {
      std::ifstream in(jinja, std::ios::binary);
      chat_template = json(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()));
    } else if (fs::is_regular_file(cjson, ec)) {
      const json cj = read_json(cjson.string());
      if (cj.is_object() && cj.contains("chat_template")) chat_template = cj["chat_template"];
    }
    if (tc.contains("chat_template")) chat_template = tc["chat_template"];
    const json added = tj.value("added_tokens", json::array());
    for (const std::string& t : types) {
      if (const json a = tc_get("add_" + t + "_token"); a.is_boolean()) set_add(t, a.get<bool>());
      const json e = tc_get(t + "_token");
      std::string content;
      if (e.is_string())
        content = e.get<std::string>();
      else if (e.is_object() && e.contains("content") && e["content"].is_string())
        content = e["content"].get<std::string>();
      else
        continue;
      if (!added.is_array()) continue;
      for (const json& at : added) {
        if (at.is_object() && at.value("content", json()) == content) {
          set_id(t, at.value("id", json()), "tokenizer.json added_tokens");
          break;
        }
      }
    }
  }
  // config.json is only a fallback for the ids (a bare tokenizer directory has none).
  const std::string cfg_path = (fs::path(dir) / "config.json").string();
  const json cfg = fs::exists(cfg_path) ? read_json(cfg_path) : json::object();
  for (const std::string& t : types) {
    json v = cfg.is_object() ? cfg.value(t + "_token_id", json()) : json();
    if (v.is_null() && cfg.is_object() && cfg.contains("text_config") && cfg["text_config"].is_object())
      v = cfg["text_config"].value(t + "_token_id", json());
    set_id(t, v, "config.json");
  }

  static const std::map<std::string, std::string> kIdKeys = {
      {"bos", "bos_token_id"},       {"eos", "eos_token_id"},     {"unk", "unknown_token_id"},
      {"sep", "seperator_token_id"}, {"pad", "padding_token_id"}, {"mask", "mask_token_id"},
      {"eot", "eot_token_id"},       {"eom", "eom_token_id"}};
  for (const auto& [t, id] : ids) {
    const auto it = kIdKeys.find(t);
    if (it != kIdKeys.end()) m.u32("tokenizer.ggml." + it->second, id);  // cls has no GGUF key
  }
  for (const auto& [t, v] : add) {
    if (t == "bos" || t == "eos" || t == "sep")
      m.set("tokenizer.ggml.add_" + t + "_token", GgufValue::boolean(v));
  }
  if (chat_template && chat_template->is_string()) {
    m.set("tokenizer.chat_template", GgufValue::str(chat_template->get<std::string>()));
  } else if (chat_template && chat_template->is_array()) {
    std::optional<std::string> dflt;
    std::vector<std::string> names;
    for (const json& ch : *chat_template) {
      if (!ch.is_object() || !ch.contains("template") || !ch["template"].is_string()) continue;
      std::string name = ch.value("name", "");
      for (char& x : name)
        if (!std::isalnum(static_cast<unsigned char>(x))) x = '_';
      if (name.empty()) continue;
      if (name == "default") {
        dflt = ch["template"].get<std::string>();
      } else {
        if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
        m.set("tokenizer.chat_template." + name, GgufValue::str(ch["template"].get<std::string>()));
      }
    }
    if (!names.empty()) m.set("tokenizer.chat_templates", GgufValue::str_array(names));
    if (dflt) m.set("tokenizer.chat_template", GgufValue::str(*dflt));
  }
}

void add_vocab(const std::string& dir, int64_t n_vocab, bool llama_arch,
               std::vector<std::pair<std::string, GgufValue>>* kv) {
  Meta m;
  std::error_code ec;
  const fs::path tj_path = fs::path(dir) / "tokenizer.json";
  if (!fs::is_regular_file(tj_path, ec)) {
    MOE_CHECK(
        !fs::exists(fs::path(dir) / "tokenizer.model", ec), dir,
        ": only a SentencePiece tokenizer.model is present; a byte-level BPE tokenizer.json is required");
    fail(dir, ": no tokenizer.json");
  }
  const json tj = read_json(tj_path.string());
  MOE_CHECK(tj.is_object() && tj.contains("model") && tj["model"].is_object(), tj_path.string(),
            ": no model object");
  MOE_CHECK(tj["model"].value("type", "BPE") == "BPE", tj_path.string(), ": model type '",
            tj["model"].value("type", ""), "' is not supported (byte-level BPE only)");
  json tc;
  const fs::path tc_path = fs::path(dir) / "tokenizer_config.json";
  if (fs::is_regular_file(tc_path, ec)) tc = read_json(tc_path.string());
  if (llama_arch && tc.is_object() && tc.contains("add_prefix_space") && tc["add_prefix_space"].is_boolean())
    m.set("tokenizer.ggml.add_space_prefix", GgufValue::boolean(tc["add_prefix_space"].get<bool>()));

  // Tokens and types exactly as HfBpeTokenizer (and so Hugging Face) numbers them.
  const HfBpeTokenizer tok(tj_path.string());
  MOE_CHECK(tok.n_vocab() <= n_vocab, dir, ": tokenizer.json has ", tok.n_vocab(),
            " tokens, more than config.json vocab_size = ", n_vocab);
  const std::string r1_bos =
      "<\xef\xbd\x9c"
      "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";
  const std::string pre = detect_pre(tj, tj_path.string(), tok.find_token(r1_bos) >= 0);
  std::vector<std::string> tokens(static_cast<size_t>(n_vocab));
  std::vector<int32_t> types(static_cast<size_t>(n_vocab), 5);
  for (int64_t i = 0; i < n_vocab; ++i) {
    if (i >= tok.n_vocab()) {
      tokens[i] = "[PAD" + std::to_string(i) + "]";
      continue;
    }
    tokens[i] = tok.token_text(static_cast<int32_t>(i));
    switch (tok.token_type(static_cast<int32_t>(i))) {
      case TokenType::kNormal:
        types[i] = 1;
        break;
      case TokenType::kControl:
        types[i] = 3;
        break;
      case TokenType::kUserDefined: {
        types[i] = 4;
        // The converter pre-normalizes U+2581 to a space in user-defined tokens.
        const std::string& t = tokens[i];
        std::string r;
        for (size_t p = 0; p < t.size();) {
          if (t.compare(p, 3, "\xe2\x96\x81") == 0) {
            r += ' ';
            p += 3;
          } else {
            r += t[p++];
          }
        }
        tokens[i] = std::move(r);
        break;
      }
      default:
        types[i] = 5;  // a gap: "[PAD{i}]"
    }
  }
  m.set("tokenizer.ggml.model", GgufValue::str("gpt2"));
  m.set("tokenizer.ggml.pre", GgufValue::str(pre));
  m.set("tokenizer.ggml.tokens", GgufValue::str_array(tokens));
  m.set("tokenizer.ggml.token_type", GgufValue::i32_array(types));

  // Merges: "a b" strings kept; pairs joined with a space, spaces inside encoded as U+0120.
  std::vector<std::string> merges;
  if (const auto mj = tj["model"].find("merges"); mj != tj["model"].end() && mj->is_array()) {
    for (const json& x : *mj) {
      if (x.is_string()) {
        merges.push_back(x.get<std::string>());
      } else if (x.is_array() && x.size() == 2 && x[0].is_string() && x[1].is_string()) {
        std::string s;
        for (int k = 0; k < 2; ++k) {
          if (k) s += ' ';
          for (char ch : x[k].get<std::string>())
            s += ch == ' ' ? std::string("\xc4\xa0") : std::string(1, ch);
        }
        merges.push_back(std::move(s));
      } else {
        fail(tj_path.string(), ": merge ", merges.size(), " is neither \"a b\" nor [\"a\", \"b\"]");
      }
    }
  }
  if (!merges.empty()) m.set("tokenizer.ggml.merges", GgufValue::str_array(merges));
  add_special_vocab(m, dir, tj, tc, n_vocab);
  for (auto& e : m.take()) kv->push_back(std::move(e));
}

}  // namespace

void add_hf_bpe_vocab(const std::string& dir, int64_t n_vocab, bool llama_arch,
                      std::vector<std::pair<std::string, GgufValue>>* kv) {
  try {
    add_vocab(dir, n_vocab, llama_arch, kv);
  } catch (const json::exception& e) {
    fail(dir, ": tokenizer.json / tokenizer_config.json: unexpected JSON content: ", e.what());
  }
}

}  // namespace moe
