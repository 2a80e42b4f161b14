#include "tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace moe {

using nlohmann::json;

struct HfBpeTokenizer::Normalizer {
  enum Kind { kForm, kLowercase, kPrepend, kReplace, kStrip } kind = kForm;
  NormalForm form = NormalForm::kNfc;
  std::string text;                  // kPrepend: the prefix; kReplace: the replacement
  std::shared_ptr<Regex> regex;      // kReplace
  bool left = false, right = false;  // kStrip
};

class HfBpeTokenizer::Matcher {
 public:
  void add(std::string_view text, int32_t index) {
    if (text.empty()) return;
    int32_t node = 0;
    for (char c : text) {
      const auto b = static_cast<uint8_t>(c);
      int32_t child = child_of(node, b);
      if (child < 0) {
        child = static_cast<int32_t>(nodes_.size());
        nodes_[node].next.emplace_back(b, child);
        nodes_.emplace_back();
      }
      node = child;
    }
    if (nodes_[node].value < 0) nodes_[node].value = index;  // the first of duplicates
    first_[static_cast<uint8_t>(text[0])] = true;
  }
  // The leftmost match at or after pos, the longest there (aho-corasick's LeftmostLongest).
  bool find(std::string_view s, size_t pos, size_t* begin, size_t* end, int32_t* index) const {
    for (size_t p = pos; p < s.size(); ++p) {
      if (!first_[static_cast<uint8_t>(s[p])]) continue;
      int32_t node = 0, best = -1;
      size_t best_end = 0;
      for (size_t q = p; q < s.size(); ++q) {
        node = child_of(node, static_cast<uint8_t>(s[q]));
        if (node < 0) break;
        if (nodes_[node].value >= 0) {
          best = nodes_[node].value;
          best_end = q + 1;
        }
      }
      if (best >= 0) {
        *begin = p;
        *end = best_end;
        *index = best;
        return true;
      }
    }
    return false;
  }
  bool empty() const { return nodes_.size() == 1; }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> next;
    int32_t value = -1;
  };
  int32_t child_of(int32_t node, uint8_t b) const {
    for (const auto& [c, n] : nodes_[node].next)
      if (c == b) return n;
    return -1;
  }
  std::vector<Node> nodes_ = std::vector<Node>(1);
  std::array<bool, 256> first_{};
};

namespace {

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MOE_CHECK(in, path, ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  MOE_CHECK(!in.bad(), path, ": read error");
  return ss.str();
}

json parse_json_file(const std::string& path) {
  const std::string text = read_text_file(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail(path, ": invalid JSON: ", e.what());
  }
}

// Typed field access that names the file and field on a mismatch.
struct Reader {
  const std::string& file;
  bool get_bool(const json& obj, const char* key, bool dflt) const {
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return dflt;
    MOE_CHECK(it->is_boolean(), file, ": '", key, "' must be a boolean");
    return it->get<bool>();
  }
  std::string get_string(const json& obj, const char* key, const std::string& dflt) const {
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return dflt;
    MOE_CHECK(it->is_string(), file, ": '", key, "' must be a string");
    return it->get<std::string>();
  }
  const json& get_object(const json& obj, const char* key) const {
    const auto it = obj.find(key);
    MOE_CHECK(it != obj.end() && it->is_object(), file, ": '", key, "' must be an object");
    return *it;
  }
  const json& get_array(const json& obj, const char* key) const {
    const auto it = obj.find(key);
    MOE_CHECK(it != obj.end() && it->is_array(), file, ": '", key, "' must be an array");
    return *it;
  }
  int32_t get_id(const json& v, const char* what) const {
    MOE_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 &&
                  v.get<int64_t>() < std::numeric_limits<int32_t>::max(),
              file, ": ", what, " must be a non-negative 32-bit integer");
    return static_cast<int32_t>(v.get<int64_t>());
  }
};

// convert_hf_to_gguf.py's does_token_look_special.
bool looks_special(std::string_view t) {
  auto starts = [&](std::string_view p) { return t.substr(0, p.size()) == p; };
  auto ends = [&](std::string_view p) { return t.size() >= p.size() && t.substr(t.size() - p.size()) == p; };
  return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || (starts("<|") && ends("|>")) ||
         (starts("<\xef\xbd\x9c") && ends("\xef\xbd\x9c>")) || (starts("<unused") && ends(">"));
}

// Texts llama.cpp treats as end of generation (llama_vocab::impl::load).
constexpr std::string_view kEogTexts[] = {"<|eot_id|>",
                                          "<|im_end|>",
                                          "<|end|>",
                                          "<end_of_turn>",
                                          "<|endoftext|>",
                                          "</s>",
                                          "<|eom_id|>",
                                          "<EOT>",
                                          "<|end_of_text|>",
                                          "<end_of_utterance>",
                                          "<\xef\xbd\x9c"
                                          "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"};

// The contents of a token field of tokenizer_config.json: "text", {"content": "text"} or null.
std::string config_token(const json& cfg, const char* key) {
  const auto it = cfg.find(key);
  if (it == cfg.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  return "";
}

size_t white_space_prefix(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    size_t next = pos;
    if (!is_white_space(next_code_point(s, &next))) break;
    pos = next;
  }
  return pos;
}

// Start of the run of White_Space that ends s.
size_t white_space_suffix_start(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    size_t p = start;
    if (!is_white_space(next_code_point(s, &p))) break;
    end = start;
  }
  return end;
}

// Rust regex's \w: Alphabetic, marks, decimal digits, connector punctuation, join controls.
bool is_word_char_at(std::string_view s, size_t pos) {
  static const Regex kWord("[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]",
                           Regex::Dialect::kOniguruma);
  size_t next = pos;
  next_code_point(s, &next);
  size_t b = 0, e = 0;
  return kWord.find(s.substr(pos, next - pos), 0, &b, &e);
}

}  // namespace

HfBpeTokenizer::HfBpeTokenizer(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string json_path = path;
  if (fs::is_directory(path, ec)) json_path = (fs::path(path) / "tokenizer.json").string();
  MOE_CHECK(fs::is_regular_file(json_path, ec), json_path, ": no such file");
  const std::string config_path = (fs::path(json_path).parent_path() / "tokenizer_config.json").string();
  try {
    load(json_path, fs::is_regular_file(config_path, ec) ? config_path : "");
  } catch (const json::exception& e) {  // a field of an unexpected JSON type
    fail(json_path, ": ", e.what());
  }
}

HfBpeTokenizer::~HfBpeTokenizer() = default;

void HfBpeTokenizer::load(const std::string& json_path, const std::string& config_path) {
  const json root = parse_json_file(json_path);
  const Reader rd{json_path};
  MOE_CHECK(root.is_object(), json_path, ": expected a JSON object");

  // ---- model ----
  const json& model = rd.get_object(root, "model");
  const std::string type = rd.get_string(model, "type", "BPE");
  MOE_CHECK(type == "BPE", json_path, ": model type '", type, "' is not supported (only BPE)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    MOE_CHECK(rd.get_string(model, key, "").empty(), json_path, ": model.", key, " is not supported");
  }
  TokenIdMap vocab;
  int64_t max_id = -1;
  for (const auto& [text, id] : rd.get_object(model, "vocab").items()) {
    const int32_t i = rd.get_id(id, "a vocabulary id");
    vocab.emplace(text, i);
    max_id = std::max<int64_t>(max_id, i);
  }
  std::vector<std::pair<std::string, std::string>> merges;
  if (model.contains("merges")) {
    const json& jm = rd.get_array(model, "merges");
    merges.reserve(jm.size());
    for (const json& m : jm) {
      if (m.is_string()) {  // "a b"
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        MOE_CHECK(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos, json_path, ": merge ",
                  merges.size(), " '", s, "' is not two space-separated tokens");
        merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else {  // ["a", "b"]
        MOE_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), json_path,
                  ": merge ", merges.size(), " must be \"a b\" or [\"a\", \"b\"]");
        merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      }
    }
  }

  // ---- added tokens: ids as the library assigns them (AddedVocabulary::add_tokens) ----
  TokenIdMap added_ids;
  const int64_t model_size = static_cast<int64_t>(vocab.size());
  int64_t max_added = -1;
  if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
    for (const json& t : rd.get_array(root, "added_tokens")) {
      MOE_CHECK(t.is_object(), json_path, ": added_tokens entries must be objects");
      AddedToken a;
      a.content = rd.get_string(t, "content", "");
      if (a.content.empty() || added_ids.count(a.content)) continue;
      a.special = rd.get_bool(t, "special", false);
      a.lstrip = rd.get_bool(t, "lstrip", false);
      a.rstrip = rd.get_bool(t, "rstrip", false);
      a.single_word = rd.get_bool(t, "single_word", false);
      a.normalized = rd.get_bool(t, "normalized", !a.special);
      a.control = a.special || looks_special(a.content);
      if (const auto it = vocab.find(a.content); it != vocab.end()) {
        a.id = it->second;
      } else {
        a.id = static_cast<int32_t>(max_added >= model_size || model_size == 0 ? max_added + 1 : model_size);
      }
      max_added = std::max<int64_t>(max_added, a.id);
      max_id = std::max<int64_t>(max_id, a.id);
      added_ids.emplace(a.content, a.id);
      added_.push_back(std::move(a));
    }
  }
  MOE_CHECK(max_id >= 0, json_path, ": empty vocabulary");
  // Ids may leave gaps, but a malformed file must not make us allocate without bound.
  MOE_CHECK(max_id < 2 * (model_size + static_cast<int64_t>(added_.size())) + 1024, json_path, ": token id ",
            max_id, " is far beyond the vocabulary size");

  const auto n = static_cast<size_t>(max_id + 1);
  tokens_.assign(n, "");
  types_.assign(n, TokenType::kUnused);
  attrs_.assign(n, kAttrUnused);
  scores_.assign(n, 0.0f);
  is_model_token_.assign(n, 0);
  for (const auto& [text, id] : vocab) {
    MOE_CHECK(tokens_[id].empty(), json_path, ": vocabulary id ", id, " is used twice");
    tokens_[id] = text;
    types_[id] = TokenType::kNormal;
    attrs_[id] = kAttrNormal;
    is_model_token_[id] = 1;
  }
  for (const AddedToken& a : added_) {
    tokens_[a.id] = a.content;
    types_[a.id] = a.control ? TokenType::kControl : TokenType::kUserDefined;
    uint32_t attr = a.control ? kAttrControl : kAttrUserDefined;
    if (a.lstrip) attr |= kAttrLstrip;
    if (a.rstrip) attr |= kAttrRstrip;
    if (a.single_word) attr |= kAttrSingleWord;
    if (a.normalized) attr |= kAttrNormalized;
    attrs_[a.id] = attr;
  }
  token_to_id_.clear();
  for (size_t i = 0; i < n; ++i) {
    if (tokens_[i].empty()) tokens_[i] = "[PAD" + std::to_string(i) + "]";  // a gap
    token_to_id_.emplace(tokens_[i], static_cast<int32_t>(i));
  }

  // ---- normalizer ----
  std::vector<const json*> pending;
  if (root.contains("normalizer") && !root["normalizer"].is_null()) pending.push_back(&root["normalizer"]);
  for (size_t k = 0; k < pending.size(); ++k) {
    const json& nj = *pending[k];
    const std::string nt = rd.get_string(nj, "type", "");
    Normalizer s;
    if (nt == "Sequence") {
      // Flatten in order: insert the children right after this entry.
      const json& list = rd.get_array(nj, "normalizers");
      std::vector<const json*> kids;
      for (const json& c : list) kids.push_back(&c);
      pending.insert(pending.begin() + static_cast<std::ptrdiff_t>(k) + 1, kids.begin(), kids.end());
      continue;
    } else if (nt == "NFC" || nt == "NFD" || nt == "NFKC" || nt == "NFKD") {
      s.form = nt == "NFC"    ? NormalForm::kNfc
               : nt == "NFD"  ? NormalForm::kNfd
               : nt == "NFKC" ? NormalForm::kNfkc
                              : NormalForm::kNfkd;
    } else if (nt == "Lowercase") {
      s.kind = Normalizer::kLowercase;
    } else if (nt == "Prepend") {
      s.kind = Normalizer::kPrepend;
      s.text = rd.get_string(nj, "prepend", "");
    } else if (nt == "Strip") {
      s.kind = Normalizer::kStrip;
      s.left = rd.get_bool(nj, "strip_left", true);
      s.right = rd.get_bool(nj, "strip_right", true);
    } else if (nt == "Replace") {
      s.kind = Normalizer::kReplace;
      s.text = rd.get_string(nj, "content", "");
      const json& pat = rd.get_object(nj, "pattern");
      const std::string re = pat.contains("Regex") ? rd.get_string(pat, "Regex", "")
                                                   : regex_escape(rd.get_string(pat, "String", ""));
      MOE_CHECK(!re.empty(), json_path, ": Replace normalizer with an empty pattern");
      s.regex = std::make_shared<Regex>(re, Regex::Dialect::kOniguruma);
    } else {
      fail(json_path, ": normalizer '", nt, "' is not supported");
    }
    normalizers_.push_back(std::move(s));
  }

  // ---- pre-tokenizer: must end with ByteLevel (this is a byte-level BPE) ----
  bool byte_level = false;
  std::vector<const json*> steps;
  if (root.contains("pre_tokenizer") && !root["pre_tokenizer"].is_null())
    steps.push_back(&root["pre_tokenizer"]);
  for (size_t k = 0; k < steps.size(); ++k) {
    const json& pj = *steps[k];
    const std::string pt = rd.get_string(pj, "type", "");
    MOE_CHECK(!byte_level, json_path, ": pre-tokenizer '", pt, "' after ByteLevel is not supported");
    if (pt == "Sequence") {
      std::vector<const json*> kids;
      for (const json& c : rd.get_array(pj, "pretokenizers")) kids.push_back(&c);
      steps.insert(steps.begin() + static_cast<std::ptrdiff_t>(k) + 1, kids.begin(), kids.end());
    } else if (pt == "Split") {
      const json& pat = rd.get_object(pj, "pattern");
      const std::string re = pat.contains("Regex") ? rd.get_string(pat, "Regex", "")
                                                   : regex_escape(rd.get_string(pat, "String", ""));
      pre_.add_split(re, Regex::Dialect::kOniguruma,
                     split_behavior_from_name(rd.get_string(pj, "behavior", "")),
                     rd.get_bool(pj, "invert", false));
    } else if (pt == "Digits") {
      pre_.add_split(rd.get_bool(pj, "individual_digits", false) ? "\\p{N}" : "\\p{N}+",
                     Regex::Dialect::kOniguruma, SplitBehavior::kIsolated);
    } else if (pt == "ByteLevel") {
      if (rd.get_bool(pj, "add_prefix_space", true)) pre_.add_prefix_space();
      if (rd.get_bool(pj, "use_regex", true))
        pre_.add_split(kGpt2Pattern, Regex::Dialect::kOniguruma, SplitBehavior::kIsolated);
      byte_level = true;
    } else {
      fail(json_path, ": pre-tokenizer '", pt, "' is not supported");
    }
  }
  MOE_CHECK(byte_level, json_path, ": not a byte-level BPE (no ByteLevel pre-tokenizer); not supported");

  // ---- BPE ----
  BpeOptions o;
  o.hf = true;
  o.ignore_merges = rd.get_bool(model, "ignore_merges", false);
  o.fuse_unk = rd.get_bool(model, "fuse_unk", false);
  o.byte_fallback = rd.get_bool(model, "byte_fallback", false);
  if (const std::string unk = rd.get_string(model, "unk_token", ""); !unk.empty()) {
    const auto it = vocab.find(unk);
    if (it != vocab.end()) o.unk_id = it->second;
  }
  // "dropout" only randomizes training-time segmentation; encoding here is deterministic.
  try {
    init_bpe(
        merges,
        [&vocab](const std::string& t) {
          const auto it = vocab.find(t);
          return it == vocab.end() ? -1 : it->second;
        },
        o);
  } catch (const Error& e) {
    fail(json_path, ": ", e.what());
  }

  pieces_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    if (types_[i] == TokenType::kUnused) continue;  // gaps decode to nothing
    if (!byte_level_decode(tokens_[i], &pieces_[i])) pieces_[i] = tokens_[i];
  }

  // Added-token matchers; contents of normalized tokens are matched in normalized form.
  for (auto& row : matchers_)
    for (auto& m : row) m = std::make_unique<Matcher>();
  for (size_t i = 0; i < added_.size(); ++i) {
    const AddedToken& a = added_[i];
    const std::string text = a.normalized ? normalize(a.content) : a.content;
    const int norm = a.normalized ? 1 : 0;
    matchers_[norm][1]->add(text, static_cast<int32_t>(i));
    if (!a.control) matchers_[norm][0]->add(text, static_cast<int32_t>(i));
  }

  // ---- special ids ----
  json cfg = json::object();
  if (!config_path.empty()) {
    cfg = parse_json_file(config_path);
    MOE_CHECK(cfg.is_object(), config_path, ": expected a JSON object");
  }
  const Reader crd{config_path};
  bos_id_ = find_token(config_token(cfg, "bos_token"));
  eos_id_ = find_token(config_token(cfg, "eos_token"));
  pad_id_ = find_token(config_token(cfg, "pad_token"));
  unk_id_ = o.unk_id >= 0 ? o.unk_id : find_token(config_token(cfg, "unk_token"));
  // Without tokenizer_config.json, a TemplateProcessing post-processor ("<bos> $A") tells.
  bool template_bos = false;
  if (root.contains("post_processor") && root["post_processor"].is_object()) {
    const json& pp = root["post_processor"];
    if (pp.value("type", "") == "TemplateProcessing" && pp.contains("single") && pp["single"].is_array() &&
        !pp["single"].empty() && pp["single"][0].contains("SpecialToken")) {
      const json& st = pp["single"][0]["SpecialToken"];
      if (st.contains("id") && st["id"].is_string()) {
        const int32_t id = find_token(st["id"].get<std::string>());
        if (id >= 0) {
          template_bos = true;
          if (bos_id_ < 0) bos_id_ = id;
        }
      }
    }
  }
  add_bos_ = crd.get_bool(cfg, "add_bos_token", template_bos) && bos_id_ >= 0;
  add_eos_ = crd.get_bool(cfg, "add_eos_token", false) && eos_id_ >= 0;
  add_space_prefix_ = false;

  std::vector<int32_t> eog;
  if (eos_id_ >= 0) eog.push_back(eos_id_);
  for (const AddedToken& a : added_) {
    if (std::find(std::begin(kEogTexts), std::end(kEogTexts), a.content) == std::end(kEogTexts)) continue;
    eog.push_back(a.id);
    if (eot_id_ < 0 && a.content != "</s>") eot_id_ = a.id;
  }
  if (const int32_t id = find_token("<|eom_id|>"); id >= 0) eom_id_ = id;
  std::sort(eog.begin(), eog.end());
  eog.erase(std::unique(eog.begin(), eog.end()), eog.end());
  eog_ids_ = std::move(eog);

  special_tokens_.clear();
  for (const AddedToken& a : added_) special_tokens_.push_back(a.id);
  std::stable_sort(special_tokens_.begin(), special_tokens_.end(),
                   [this](int32_t a, int32_t b) { return tokens_[a].size() > tokens_[b].size(); });
}

std::string HfBpeTokenizer::normalize(std::string_view s) const {
  std::string cur(s);
  for (const Normalizer& n : normalizers_) {
    switch (n.kind) {
      case Normalizer::kForm:
        cur = normalize_unicode(cur, n.form);
        break;
      case Normalizer::kLowercase:
        cur = lowercase_unicode(cur);
        break;
      case Normalizer::kPrepend:
        if (!cur.empty()) cur.insert(0, n.text);
        break;
      case Normalizer::kStrip: {
        const size_t b = n.left ? white_space_prefix(cur) : 0;
        const size_t e = n.right ? std::max(b, white_space_suffix_start(cur)) : cur.size();
        cur = cur.substr(b, e - b);
        break;
      }
      case Normalizer::kReplace: {
        std::string out;
        size_t pos = 0, mb = 0, me = 0;
        while (pos <= cur.size() && n.regex->find(cur, pos, &mb, &me)) {
          out.append(cur, pos, mb - pos);
          out += n.text;
          if (me == mb) {
            if (me >= cur.size()) {
              pos = cur.size() + 1;
              break;
            }
            const size_t step = utf8_sequence_length(static_cast<unsigned char>(cur[me]));
            out.append(cur, me, step);
            me += step;
          }
          pos = me;
        }
        if (pos < cur.size()) out.append(cur, pos, std::string::npos);
        cur = std::move(out);
        break;
      }
    }
  }
  return cur;
}

// AddedVocabulary::find_matches: splits s at the added tokens m finds, pushing their ids to
// out and handing the text between them to on_text.
template <class TextFn>
void HfBpeTokenizer::split_added(std::string_view s, const Matcher& m, std::vector<int32_t>* out,
                                 TextFn&& on_text) const {
  size_t start_offset = 0, pos = 0, b = 0, e = 0;
  int32_t index = -1;
  while (!m.empty() && m.find(s, pos, &b, &e, &index)) {
    pos = e;  // the automaton goes on after the match even when it is discarded below
    const AddedToken& a = added_[index];
    if (a.single_word) {
      const bool start_space = b == 0 || !is_word_char_at(s, [&] {
                                 size_t p = b - 1;
                                 while (p > 0 && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
                                 return p;
                               }());
      const bool stop_space = e == s.size() || !is_word_char_at(s, e);
      if (!start_space || !stop_space) continue;
    }
    if (a.lstrip) b = std::max(white_space_suffix_start(s.substr(0, b)), start_offset);
    if (a.rstrip) e += white_space_prefix(s.substr(e));
    if (start_offset < b) on_text(s.substr(start_offset, b - start_offset));
    out->push_back(a.id);
    start_offset = e;
  }
  if (start_offset < s.size()) on_text(s.substr(start_offset));
}

std::vector<int32_t> HfBpeTokenizer::encode(std::string_view text, bool parse_special) const {
  std::string storage;
  text = sanitize_utf8(text, &storage);
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  const int ps = parse_special ? 1 : 0;
  split_added(text, *matchers_[0][ps], &out, [&](std::string_view raw) {
    if (normalizers_.empty()) {
      split_added(raw, *matchers_[1][ps], &out, [&](std::string_view piece) { encode_plain(piece, &out); });
      return;
    }
    const std::string normalized = normalize(raw);
    split_added(normalized, *matchers_[1][ps], &out,
                [&](std::string_view piece) { encode_plain(piece, &out); });
  });
  return out;
}

std::string HfBpeTokenizer::token_to_piece(int32_t id, bool special) const {
  check_id(id);
  if ((attrs_[id] & kAttrControl) && !special) return "";
  return pieces_[id];
}

std::unique_ptr<Tokenizer> tokenizer_from_hf(const std::string& path_to_json_or_dir) {
  return std::make_unique<HfBpeTokenizer>(path_to_json_or_dir);
}

}  // namespace moe
