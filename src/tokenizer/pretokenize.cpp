#include "tokenizer/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <initializer_list>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace moe {
namespace {

// Unicode White_Space as a class body: what Oniguruma's \s and llama.cpp's whitespace flag
// accept. PCRE2's own \s (with UCP) would add U+180E, which Unicode dropped from White_Space.
constexpr std::string_view kSpaceClass = "\\t\\n\\x0B\\f\\r\\x{85}\\p{Z}";

// Rewrites \s and \S (outside classes; \s also inside) to the explicit White_Space class, and
// widens \p{L}, \p{N}, ... to Unicode 16.0.
std::string translate_pattern(std::string_view p, bool unicode16) {
  std::string out;
  out.reserve(p.size() + 32);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char d = p[i + 1];
      ++i;
      if (d == 's') {
        if (!in_class) out += '[';
        out += kSpaceClass;
        if (!in_class) out += ']';
      } else if (d == 'S' && !in_class) {
        out += "[^";
        out += kSpaceClass;
        out += ']';
      } else if ((d == 'p' || (d == 'P' && !in_class)) && i + 3 < p.size() && p[i + 1] == '{' &&
                 p[i + 3] == '}' && !unicode16_additions(p[i + 2]).empty()) {
        // \p{L} & co. with the code points Unicode 16 added (see unicode16_additions).
        if (!in_class) out += d == 'P' ? "[^" : "[";
        out += "\\p{";
        out += p[i + 2];
        out += '}';
        if (unicode16) out += unicode16_additions(p[i + 2]);
        if (!in_class) out += ']';
        i += 3;
      } else {
        out += c;
        out += d;
      }
      continue;
    }
    out += c;
    if (!in_class && c == '[') {
      in_class = true;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
    } else if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {
      const size_t end = p.find(":]", i + 2);  // POSIX class such as [:alpha:]
      if (end != std::string_view::npos) {
        out.append(p.substr(i + 1, end + 2 - (i + 1)));
        i = end + 1;
      }
    } else if (in_class && c == ']') {
      in_class = false;
    }
  }
  return out;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

// Per-thread PCRE2 match state: match data for one pair of offsets and a JIT stack that can
// grow to 8 MiB (long runs of whitespace backtrack deep).
struct MatchScratch {
  pcre2_match_data* data;
  pcre2_match_context* context;
  pcre2_jit_stack* jit_stack;
  MatchScratch() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(64 * 1024, 8 * 1024 * 1024, nullptr);
    if (jit_stack) pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~MatchScratch() {
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;
};

MatchScratch& match_scratch() {
  thread_local MatchScratch scratch;
  MOE_CHECK(scratch.data && scratch.context, "PCRE2: out of memory");
  return scratch;
}

}  // namespace

Regex::Regex(std::string_view pattern, Dialect dialect, bool unicode16) : pattern_(pattern) {
  const std::string translated = translate_pattern(pattern, unicode16);
  widened_ = unicode16 && translated != translate_pattern(pattern, false);
  uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK;
  options |= dialect == Dialect::kOniguruma ? PCRE2_MULTILINE : PCRE2_DOLLAR_ENDONLY;
  pcre2_compile_context* cc = pcre2_compile_context_create(nullptr);
  MOE_CHECK(cc, "PCRE2: out of memory");
  pcre2_set_newline(cc, PCRE2_NEWLINE_LF);  // Oniguruma's only line break
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(), options, &err,
                        &err_offset, cc);
  pcre2_compile_context_free(cc);
  MOE_CHECK(code_, "invalid pre-tokenizer regex '", pattern_, "': ", pcre2_message(err), " at offset ",
            err_offset);
  jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() { pcre2_code_free(code_); }

bool Regex::find(std::string_view subject, size_t start, size_t* match_begin, size_t* match_end) const {
  MatchScratch& s = match_scratch();
  const auto* subj = reinterpret_cast<PCRE2_SPTR>(subject.data());
  // The tokenizers' patterns backtrack linearly (a long run of spaces costs a few steps per
  // byte), so the limit grows with the piece instead of failing on long valid input; it still
  // stops a catastrophic pattern from a tokenizer.json in time proportional to the input.
  const uint64_t limit = std::max<uint64_t>(10'000'000, 16 * static_cast<uint64_t>(subject.size()));
  pcre2_set_match_limit(s.context, static_cast<uint32_t>(std::min<uint64_t>(limit, UINT32_MAX)));
  int rc = jit_ ? pcre2_jit_match(code_, subj, subject.size(), start, 0, s.data, s.context)
                : PCRE2_ERROR_JIT_STACKLIMIT;
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
    // The interpreter keeps its backtracking state on the heap (20 MB by default).
    rc =
        pcre2_match(code_, subj, subject.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, s.data, s.context);
  }
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  MOE_CHECK(rc >= 0, "pre-tokenizer regex '", pattern_, "' failed on a ", subject.size(),
            "-byte piece: ", pcre2_message(rc));
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(s.data);
  *match_begin = ov[0];
  *match_end = ov[1];
  return true;
}

std::string regex_escape(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    const auto u = static_cast<unsigned char>(c);
    const bool plain =
        u >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!plain && u >= 0x20 && u < 0x7F) out += '\\';
    if (!plain && (u < 0x20 || u == 0x7F)) {
      static constexpr char kHex[] = "0123456789ABCDEF";
      out += "\\x{";
      out += kHex[u >> 4];
      out += kHex[u & 15];
      out += '}';
      continue;
    }
    out += c;
  }
  return out;
}

SplitBehavior split_behavior_from_name(std::string_view name) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  fail("unknown split behavior '", name, "'");
}

const char* const kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

struct PreTokenizer::Step {
  std::unique_ptr<Regex> regex;  // null: the prefix-space step
  // The same pattern with PCRE2's own (older) Unicode tables: identical results on text without
  // code points that Unicode 15/16 added (see has_unicode16_additions), and faster, since the
  // widened classes list many ranges. Null when the pattern has no class to widen.
  std::unique_ptr<Regex> narrow;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
};

struct PreTokenizer::Span {
  size_t begin;
  size_t end;
  bool match;
};

PreTokenizer::PreTokenizer() = default;
PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

void PreTokenizer::add_split(std::string_view pattern, Regex::Dialect dialect, SplitBehavior behavior,
                             bool invert) {
  auto step = std::make_unique<Step>();
  step->regex = std::make_unique<Regex>(pattern, dialect);
  if (step->regex->widened()) step->narrow = std::make_unique<Regex>(pattern, dialect, false);
  step->behavior = behavior;
  step->invert = invert;
  steps_.push_back(std::move(step));
}

void PreTokenizer::add_prefix_space() { steps_.push_back(std::make_unique<Step>()); }

void PreTokenizer::split(std::string_view text, const WordFn& fn) const {
  std::vector<std::vector<Span>> scratch(steps_.size());
  bool any_narrow = false;
  for (const auto& st : steps_) any_narrow |= st->narrow != nullptr;
  const bool wide = any_narrow && has_unicode16_additions(text);
  run(0, text, wide, scratch, fn);
}

std::vector<std::string> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string> words;
  split(text, [&](std::string_view w) { words.emplace_back(w); });
  return words;
}

void PreTokenizer::run(size_t step, std::string_view piece, bool wide,
                       std::vector<std::vector<Span>>& scratch, const WordFn& fn) const {
  if (piece.empty()) return;
  if (step == steps_.size()) {
    fn(piece);
    return;
  }
  const Step& st = *steps_[step];
  if (!st.regex) {
    if (piece[0] == ' ') {
      run(step + 1, piece, wide, scratch, fn);
    } else {
      std::string prefixed;
      prefixed.reserve(piece.size() + 1);
      prefixed += ' ';
      prefixed += piece;
      run(step + 1, prefixed, wide, scratch, fn);
    }
    return;
  }

  // Matches as Hugging Face's find_matches lists them: gaps and matches covering the piece.
  // After an empty match the search resumes one character later; an empty match right where
  // the previous match ended is skipped (Rust's find_iter).
  const Regex& re = wide || !st.narrow ? *st.regex : *st.narrow;
  const bool fast = st.behavior == SplitBehavior::kIsolated;  // no list needed
  std::vector<Span>& spans = scratch[step];
  spans.clear();
  auto emit = [&](size_t b, size_t e, bool is_match) {
    if (fast) {
      run(step + 1, piece.substr(b, e - b), wide, scratch, fn);
    } else {
      spans.push_back({b, e, is_match != st.invert});
    }
  };
  size_t prev = 0, pos = 0;
  size_t last_end = std::string_view::npos;
  size_t mb = 0, me = 0;
  while (pos <= piece.size() && re.find(piece, pos, &mb, &me)) {
    if (mb == me) {
      if (mb == last_end) {
        if (mb >= piece.size()) break;
        pos = mb + utf8_sequence_length(static_cast<unsigned char>(piece[mb]));
        continue;
      }
    }
    if (mb > prev) emit(prev, mb, false);
    emit(mb, me, true);
    prev = me;
    last_end = me;
    if (me > mb) {
      pos = me;
    } else {
      if (me >= piece.size()) break;
      pos = me + utf8_sequence_length(static_cast<unsigned char>(piece[me]));
    }
  }
  if (prev < piece.size()) emit(prev, piece.size(), false);
  if (fast) return;

  // Hugging Face's NormalizedString::split: keep or merge pieces per the behavior.
  std::vector<Span> kept;
  kept.reserve(spans.size());
  switch (st.behavior) {
    case SplitBehavior::kIsolated:
      break;
    case SplitBehavior::kRemoved:
      for (const Span& s : spans)
        if (!s.match) kept.push_back(s);
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool prev_match = false;
      for (const Span& s : spans) {
        if (s.match && !prev_match && !kept.empty()) {
          kept.back().end = s.end;
        } else {
          kept.push_back(s);
        }
        prev_match = s.match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool prev_match = false;
      for (size_t i = spans.size(); i-- > 0;) {
        const Span& s = spans[i];
        if (s.match && !prev_match && !kept.empty()) {
          kept.back().begin = s.begin;
        } else {
          kept.push_back(s);
        }
        prev_match = s.match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool prev_match = false;
      for (const Span& s : spans) {
        if (s.match == prev_match && !kept.empty()) {
          kept.back().end = s.end;
        } else {
          kept.push_back(s);
        }
        prev_match = s.match;
      }
      break;
    }
  }
  for (const Span& s : kept) run(step + 1, piece.substr(s.begin, s.end - s.begin), wide, scratch, fn);
}

namespace {

// llama.cpp's regex lists (llm_tokenizer_bpe's constructor), verbatim.
const char* const kLlama3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kQwen2 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kGpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
// Cased letters (HF's deepseek-llm tokenizer.json); non-ASCII as escapes, since several of
// the original characters are canonical singletons that editors may normalize away.
const char* const kDeepseekLlmLetters =
    "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"
    "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}"
    "\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}"
    "-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}"
    "\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}"
    "-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}"
    "\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}"
    "\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}"
    "\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}"
    "-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}"
    "\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}"
    "\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}"
    "\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}"
    "-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}"
    "\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}"
    "-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}"
    "-\\x{118DF}\\x{1E900}-\\x{1E943}]+";
const char* const kDeepseekV3Main =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
    " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";
const char* const kTekken =
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?"
    "((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kGpt4o =
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|"
    "'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])("
    "[^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}"
    "\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kPoro = " ?[^(\\s|.,!?…。，、।۔،)]+";

bool one_of(std::string_view s, std::initializer_list<std::string_view> names) {
  for (std::string_view n : names)
    if (s == n) return true;
  return false;
}

}  // namespace

LlamaPreTokenizer llama_pre_tokenizer(std::string_view pre) {
  LlamaPreTokenizer r;
  if (one_of(pre,
             {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"})) {
    r.regexes = {kLlama3};
    r.ignore_merges = true;
    r.add_bos = true;
  } else if (one_of(pre, {"dbrx", "smaug-bpe"})) {
    r.regexes = {kLlama3};
  } else if (one_of(pre, {"glm4", "chatglm-bpe"})) {
    r.regexes = {kLlama3};
    r.no_bos = true;
  } else if (pre == "deepseek-llm") {
    r.regexes = {"[\r\n]", kDeepseekLlmLetters,        "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
                 "\\s+$",  "[一-龥ࠀ-一가-퟿]+", "\\p{N}+"};
  } else if (pre == "deepseek-coder") {
    r.regexes = {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"};
  } else if (one_of(pre, {"deepseek-v3", "hunyuan-dense"})) {
    r.regexes = {"\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+", kDeepseekV3Main};
  } else if (pre == "falcon") {
    r.regexes = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", kGpt2, "[0-9][0-9][0-9]"};
  } else if (one_of(pre,
                    {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"})) {
    r.regexes = {"\\p{N}", kGpt2};
  } else if (one_of(pre, {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de",
                          "jina-v1-en", "jina-v2-code", "roberta-bpe", "a.x-4.0", "mellum", "modern-bert",
                          "mpt", "olmo", "jais", "exaone4", "trillion", "granite-docling"})) {
    r.regexes = {kGpt2};
  } else if (one_of(pre, {"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2", "hunyuan", "grok-2"})) {
    r.regexes = {kQwen2};
  } else if (pre == "seed-coder") {
    r.regexes = {
        "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
        "\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
  } else if (one_of(pre, {"bailingmoe", "bailingmoe2", "llada-moe"})) {
    r.regexes = {
        "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
        "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"};
  } else if (pre == "tekken") {
    r.regexes = {kTekken};
    r.ignore_merges = true;
    r.add_bos = true;
  } else if (one_of(pre, {"gpt-4o", "llama4", "minimax-m2"})) {
    r.regexes = {kGpt4o};
  } else if (one_of(pre, {"poro-chat", "bloom", "gpt3-finnish"})) {
    r.regexes = {kPoro};
  } else if (pre == "viking") {
    r.regexes = {kPoro, "\\p{N}"};
  } else if (pre == "chameleon") {
    r.regexes = {"<sentinel:[0-9]+>",      "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                 "([\\t\\n]|    |  )",     "\\p{N}",
                 "[\\p{P}!-/:-@\\[-`{-~]", kGpt2};
    r.add_bos = true;
  } else if (one_of(pre, {"kimi-k2", "afmoe", "superbpe"})) {
    fail("tokenizer.ggml.pre: pre-tokenizer '", pre, "' is not supported");
  } else {
    // "default", empty, or a name llama.cpp does not know either.
    r.regexes = {"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2, "\\p{N}+", "[0-9][0-9][0-9]"};
  }
  return r;
}

}  // namespace moe
