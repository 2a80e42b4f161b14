// Shared tokenizer parts: vocabulary loading with llama.cpp's load-time rules (llama-vocab.cpp,
// llama_vocab::impl::load), special-token partitioning, decoding and streaming.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <initializer_list>

#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/bpe.h"
#include "tokenizer/spm.h"

namespace moe {
namespace {

constexpr const char* kKeyModel = "tokenizer.ggml.model";
constexpr const char* kKeyTokens = "tokenizer.ggml.tokens";
constexpr const char* kKeyScores = "tokenizer.ggml.scores";
constexpr const char* kKeyTokenType = "tokenizer.ggml.token_type";
constexpr const char* kKeyAddBos = "tokenizer.ggml.add_bos_token";
constexpr const char* kKeyAddEos = "tokenizer.ggml.add_eos_token";
constexpr const char* kKeyAddSpacePrefix = "tokenizer.ggml.add_space_prefix";
constexpr const char* kKeyBosId = "tokenizer.ggml.bos_token_id";
constexpr const char* kKeyEosId = "tokenizer.ggml.eos_token_id";

// Texts llama.cpp recognises as end-of-generation tokens (llama_vocab::impl::load). Such tokens
// become EOG and are forced to control type.
constexpr std::string_view kEogTexts[] = {"<|eot_id|>",
                                          "<|im_end|>",
                                          "<|end|>",
                                          "<|return|>",
                                          "<|call|>",
                                          "<|flush|>",
                                          "<|calls|>",
                                          "<end_of_turn>",
                                          "<|endoftext|>",
                                          "</s>",
                                          "<|eom_id|>",
                                          "<EOT>",
                                          "_<EOT>",
                                          "[EOT]",
                                          "[EOS]",
                                          "<|end_of_text|>",
                                          "<end_of_utterance>",
                                          "<eos>",
                                          "<turn|>",
                                          "<|tool_response>",
                                          "<\xef\xbd\x9c"
                                          "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                          "[e~["};

bool in_list(std::string_view s, std::initializer_list<std::string_view> list) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

// isspace() of the C locale, without its undefined behaviour for negative chars.
bool is_c_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

uint32_t attr_from_type(int64_t type) {
  switch (type) {
    case 1:
      return kAttrNormal;
    case 2:
      return kAttrUnknown;
    case 3:
      return kAttrControl;
    case 4:
      return kAttrUserDefined;
    case 5:
      return kAttrUnused;
    case 6:
      return kAttrByte;
    default:
      return kAttrUndefined;
  }
}

// A special token id from the file: absent keeps *id, and so does -1 (0xFFFFFFFF as u32), which
// converters write for "none" (llama.cpp keeps its default then too); otherwise it must name a
// token.
void read_token_id(const GgufFile& file, const char* key, int32_t n_vocab, int32_t* id) {
  const GgufValue* v = file.find(key);
  if (!v) return;
  MOE_CHECK(v->is_integer(), key, ": expected an integer, got ", gguf_type_name(v->type()));
  const int64_t x = v->as_int();
  if (x == -1 || x == 0xFFFFFFFFll) return;
  MOE_CHECK(x >= 0 && x < n_vocab, key, ": token id ", x, " out of range (vocabulary of ", n_vocab,
            " tokens)");
  *id = static_cast<int32_t>(x);
}

// Length of the longest prefix of s that does not end inside an incomplete UTF-8 sequence.
// Invalid bytes never become valid later, so they are not held back.
size_t complete_utf8_prefix(const std::string& s) {
  const size_t n = s.size();
  for (size_t k = 1; k <= 3 && k <= n; ++k) {
    const auto c = static_cast<unsigned char>(s[n - k]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    size_t need = 1;
    if ((c & 0xE0) == 0xC0)
      need = 2;
    else if ((c & 0xF0) == 0xE0)
      need = 3;
    else if ((c & 0xF8) == 0xF0)
      need = 4;
    return need > k ? n - k : n;
  }
  return n;
}

}  // namespace

void Tokenizer::load_vocab(const GgufFile& file, const VocabDefaults& defaults) {
  const GgufValue& tokens = file.get(kKeyTokens);
  MOE_CHECK(tokens.type() == GgufType::ARRAY && tokens.elem_type() == GgufType::STRING, kKeyTokens,
            ": expected an array of strings");
  tokens_ = tokens.as_string_array();
  MOE_CHECK(!tokens_.empty(), kKeyTokens, ": empty vocabulary");
  MOE_CHECK(tokens_.size() < static_cast<size_t>(INT32_MAX), kKeyTokens, ": too many tokens");
  const auto n = static_cast<int32_t>(tokens_.size());

  scores_.assign(n, 0.0f);
  if (const GgufValue* v = file.find(kKeyScores)) {
    MOE_CHECK(v->type() == GgufType::ARRAY &&
                  (v->elem_type() == GgufType::FLOAT32 || v->elem_type() == GgufType::INT32),
              kKeyScores, ": expected an array of f32 or i32");
    std::vector<float> s = v->as_float_array();
    MOE_CHECK(s.size() == tokens_.size(), kKeyScores, ": ", s.size(), " scores for ", n, " tokens");
    scores_ = std::move(s);
  }

  // Without token types every token is normal, as in llama.cpp.
  types_.assign(n, TokenType::kNormal);
  attrs_.assign(n, kAttrNormal);
  if (const GgufValue* v = file.find(kKeyTokenType)) {
    MOE_CHECK(v->type() == GgufType::ARRAY && v->elem_type() == GgufType::INT32, kKeyTokenType,
              ": expected an array of i32");
    const std::vector<int64_t> t = v->as_int_array();
    MOE_CHECK(t.size() == tokens_.size(), kKeyTokenType, ": ", t.size(), " types for ", n, " tokens");
    for (int32_t i = 0; i < n; ++i) {
      attrs_[i] = attr_from_type(t[i]);
      types_[i] = t[i] >= 0 && t[i] <= 6 ? static_cast<TokenType>(t[i]) : TokenType::kUndefined;
    }
  }

  token_to_id_.clear();
  token_to_id_.reserve(tokens_.size());
  for (int32_t i = 0; i < n; ++i) {
    if (tokens_[i].empty()) tokens_[i] = "[EMPTY_" + std::to_string(i) + "]";  // as llama.cpp
    const auto [it, inserted] = token_to_id_.emplace(tokens_[i], i);
    MOE_CHECK(inserted, kKeyTokens, ": duplicate token '", tokens_[i], "' (ids ", it->second, " and ", i,
              ")");
  }

  // Special ids: a family default outside the vocabulary is dropped; the file's value must fit.
  auto dflt = [n](int32_t id) { return id >= 0 && id < n ? id : -1; };
  bos_id_ = dflt(defaults.bos_id);
  eos_id_ = dflt(defaults.eos_id);
  unk_id_ = dflt(defaults.unk_id);
  pad_id_ = -1;
  eot_id_ = -1;
  eom_id_ = -1;
  int32_t sep_id = -1, mask_id = -1;
  int32_t fim_pre = -1, fim_suf = -1, fim_mid = -1, fim_pad = -1, fim_rep = -1, fim_sep = -1;
  read_token_id(file, kKeyBosId, n, &bos_id_);
  read_token_id(file, kKeyEosId, n, &eos_id_);
  read_token_id(file, "tokenizer.ggml.eot_token_id", n, &eot_id_);
  read_token_id(file, "tokenizer.ggml.eom_token_id", n, &eom_id_);
  read_token_id(file, "tokenizer.ggml.unknown_token_id", n, &unk_id_);
  read_token_id(file, "tokenizer.ggml.seperator_token_id", n, &sep_id);  // sic, llama.cpp's key
  read_token_id(file, "tokenizer.ggml.padding_token_id", n, &pad_id_);
  read_token_id(file, "tokenizer.ggml.mask_token_id", n, &mask_id);
  read_token_id(file, "tokenizer.ggml.fim_pre_token_id", n, &fim_pre);
  read_token_id(file, "tokenizer.ggml.fim_suf_token_id", n, &fim_suf);
  read_token_id(file, "tokenizer.ggml.fim_mid_token_id", n, &fim_mid);
  read_token_id(file, "tokenizer.ggml.fim_pad_token_id", n, &fim_pad);
  read_token_id(file, "tokenizer.ggml.fim_rep_token_id", n, &fim_rep);
  read_token_id(file, "tokenizer.ggml.fim_sep_token_id", n, &fim_sep);
  read_token_id(file, "tokenizer.ggml.prefix_token_id", n, &fim_pre);  // deprecated names
  read_token_id(file, "tokenizer.ggml.suffix_token_id", n, &fim_suf);
  read_token_id(file, "tokenizer.ggml.middle_token_id", n, &fim_mid);

  add_bos_ = file.get_bool(kKeyAddBos, defaults.add_bos);
  add_eos_ = file.get_bool(kKeyAddEos, defaults.add_eos);
  add_space_prefix_ = file.get_bool(kKeyAddSpacePrefix, defaults.add_space_prefix);
  MOE_CHECK(!add_bos_ || bos_id_ >= 0, kKeyAddBos, " is true, but ", kKeyBosId, " is not set");
  MOE_CHECK(!add_eos_ || eos_id_ >= 0, kKeyAddEos, " is true, but ", kKeyEosId, " is not set");

  // Ids the file did not give are recognised by their text, and forced to control type.
  // llama.cpp takes the first match in hash-map order; we take the lowest id (they differ only
  // for vocabularies with several candidates for the same role).
  auto detect = [&](int32_t* id, std::initializer_list<std::string_view> texts) {
    if (*id >= 0) return;
    for (int32_t i = 0; i < n; ++i) {
      if (in_list(tokens_[i], texts)) {
        *id = i;
        attrs_[i] |= kAttrControl;
        return;
      }
    }
  };
  detect(&eot_id_, {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                    "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
                    "<\xef\xbd\x9c"
                    "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                    "<end_of_utterance>"});
  detect(&eom_id_, {"<|eom_id|>"});
  detect(&fim_pre, {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
                    "<\xef\xbd\x9c"
                    "fim\xe2\x96\x81"
                    "begin\xef\xbd\x9c>",
                    "<PRE>", "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>"});
  detect(&fim_suf, {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
                    "<\xef\xbd\x9c"
                    "fim\xe2\x96\x81hole\xef\xbd\x9c>",
                    "<SUF>", "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>"});
  detect(&fim_mid, {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
                    "<\xef\xbd\x9c"
                    "fim\xe2\x96\x81"
                    "end\xef\xbd\x9c>",
                    "<MID>", "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>"});
  detect(&fim_pad, {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"});
  detect(&fim_rep, {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"});
  detect(&fim_sep, {"<|file_sep|>"});

  // Control tokens whose text says "unused" are unused.
  for (int32_t i = 0; i < n; ++i) {
    if ((attrs_[i] & kAttrControl) && tokens_[i].find("unused") != std::string::npos)
      attrs_[i] |= kAttrUnused;
  }

  std::vector<int32_t> eog;
  for (int32_t id : {fim_pad, fim_rep, fim_sep})
    if (id >= 0) eog.push_back(id);
  for (int32_t i = 0; i < n; ++i) {
    if (std::find(std::begin(kEogTexts), std::end(kEogTexts), tokens_[i]) != std::end(kEogTexts)) {
      eog.push_back(i);
      attrs_[i] |= kAttrControl;
    }
  }
  // gpt-oss: these are always rendered.
  for (int32_t i = 0; i < n; ++i) {
    if (in_list(tokens_[i], {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"}))
      attrs_[i] = kAttrUserDefined;
  }
  for (int32_t id : {eos_id_, eot_id_, eom_id_})
    if (id >= 0) eog.push_back(id);
  std::sort(eog.begin(), eog.end());
  eog.erase(std::unique(eog.begin(), eog.end()), eog.end());
  auto eog_with_text = [&](std::initializer_list<std::string_view> texts) {
    for (int32_t id : eog)
      if (in_list(tokens_[id], texts)) return id;
    return -1;
  };
  // o200k_harmony / solar-open: "<|end|>" does not end generation there.
  {
    const bool has_return = eog_with_text({"<|return|>"}) >= 0;
    const bool has_call = eog_with_text({"<|call|>", "<|calls|>"}) >= 0;
    const bool has_flush = eog_with_text({"<|flush|>"}) >= 0;
    const int32_t end_id = eog_with_text({"<|end|>"});
    if (end_id >= 0 && has_call && (has_return || has_flush)) {
      eog.erase(std::find(eog.begin(), eog.end(), end_id));
      attrs_[end_id] = kAttrUserDefined;
    }
  }
  // gemma4 / paddleocr: "</s>" is not EOG when "<|tool_response>" is.
  {
    const int32_t s_id = eog_with_text({"</s>"});
    if (s_id >= 0 && eog_with_text({"<|tool_response>"}) >= 0) {
      eog.erase(std::find(eog.begin(), eog.end(), s_id));
      attrs_[s_id] = kAttrNormal;
    }
  }
  eog_ids_ = std::move(eog);

  // Special-token cache: the same std::sort call as llama.cpp on the same input, so tokens of
  // equal length end up in the same order (std::sort is not stable).
  special_tokens_.clear();
  for (int32_t i = 0; i < n; ++i) {
    if (attrs_[i] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) special_tokens_.push_back(i);
  }
  std::sort(special_tokens_.begin(), special_tokens_.end(),
            [this](int32_t a, int32_t b) { return tokens_[a].size() > tokens_[b].size(); });

  // Strip flags that llama.cpp sets by model name (not stored in GGUF files).
  std::string model_name = file.get_string("general.name", "");
  for (char& c : model_name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const std::string pre = file.get_string("tokenizer.ggml.pre", "");
  const std::string arch = file.get_string("general.architecture", "");
  auto contains_any = [](const std::string& s, std::initializer_list<std::string_view> subs) {
    for (std::string_view sub : subs)
      if (s.find(sub) != std::string::npos) return true;
    return false;
  };
  auto set_attr = [this](std::string_view text, uint32_t bit, bool on) {
    const int32_t id = find_token(text);
    if (id < 0) return;
    attrs_[id] = on ? (attrs_[id] | bit) : (attrs_[id] & ~bit);
  };
  if (contains_any(pre, {"jina-v2-de", "jina-v2-es", "jina-v2-code"}) ||
      contains_any(arch, {"nomic-bert-moe", "jina-bert-v3"})) {
    set_attr("<mask>", kAttrLstrip, true);
  } else if (contains_any(model_name, {"phi-3", "phi3"})) {
    for (int32_t id : special_tokens_) attrs_[id] |= kAttrRstrip;
    set_attr("</s>", kAttrRstrip, true);
    for (std::string_view t : {"<unk>", "<s>", "<|endoftext|>"}) set_attr(t, kAttrRstrip, false);
  } else if (contains_any(model_name, {"modern-bert"})) {
    set_attr("[MASK]", kAttrLstrip, true);
  }
}

void Tokenizer::check_id(int32_t id) const {
  MOE_CHECK(id >= 0 && id < n_vocab(), "token id ", id, " out of range (vocabulary of ", n_vocab(),
            " tokens)");
}

int32_t Tokenizer::find_token(std::string_view text) const {
  const auto it = token_to_id_.find(text);
  return it == token_to_id_.end() ? -1 : it->second;
}

const std::string& Tokenizer::token_text(int32_t id) const {
  check_id(id);
  return tokens_[id];
}

TokenType Tokenizer::token_type(int32_t id) const {
  check_id(id);
  return types_[id];
}

float Tokenizer::token_score(int32_t id) const {
  check_id(id);
  return scores_[id];
}

uint32_t Tokenizer::token_attr(int32_t id) const {
  check_id(id);
  return attrs_[id];
}

bool Tokenizer::is_eog(int32_t id) const { return std::binary_search(eog_ids_.begin(), eog_ids_.end(), id); }

std::vector<Tokenizer::Fragment> Tokenizer::partition_special(std::string_view text,
                                                              bool parse_special) const {
  std::vector<Fragment> cur, next;
  if (text.empty()) return cur;
  cur.push_back({-1, 0, text.size()});
  for (const int32_t id : special_tokens_) {
    const uint32_t attr = attrs_[id];
    if (!parse_special && (attr & (kAttrControl | kAttrUnknown))) continue;
    const std::string& needle = tokens_[id];
    next.clear();
    for (const Fragment& f : cur) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      size_t off = f.offset, len = f.length;
      while (len > 0) {
        const size_t m = text.substr(0, off + len).find(needle, off);
        if (m == std::string_view::npos) break;
        size_t left_len = m - off;
        if (attr & kAttrLstrip) {
          while (left_len > 0 && is_c_space(text[off + left_len - 1])) --left_len;
        }
        if (left_len > 0) next.push_back({-1, off, left_len});
        next.push_back({id, 0, 0});
        const size_t end = off + len;
        off = m + needle.size();
        len = end - off;
        if (attr & kAttrRstrip) {
          while (len > 0 && is_c_space(text[off])) ++off, --len;
        }
      }
      if (len > 0) next.push_back({-1, off, len});
    }
    cur.swap(next);
  }
  return cur;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool special) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string piece = token_to_piece(ids[i], special);
    // As llama.cpp's detokenize: only the very first token loses a leading space.
    const bool strip = i == 0 && add_space_prefix_ && !piece.empty() && piece[0] == ' ';
    out.append(piece, strip ? 1 : 0);
  }
  return out;
}

std::string StreamDecoder::push(int32_t id) {
  std::string piece = tok_.token_to_piece(id, special_);
  if (first_ && tok_.add_space_prefix() && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
  first_ = false;
  pending_ += piece;
  const size_t n = complete_utf8_prefix(pending_);
  std::string out = pending_.substr(0, n);
  pending_.erase(0, n);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

std::unique_ptr<Tokenizer> tokenizer_from_gguf(const GgufFile& file) {
  const GgufValue& v = file.get(kKeyModel);
  MOE_CHECK(v.type() == GgufType::STRING, kKeyModel, ": expected a string, got ", gguf_type_name(v.type()));
  const std::string& model = v.as_string();
  if (model == "llama") return std::make_unique<SpmTokenizer>(file);
  if (model == "gpt2") return bpe_tokenizer_from_gguf(file);
  fail(kKeyModel, ": unsupported tokenizer model '", model, "'");
}

}  // namespace moe
