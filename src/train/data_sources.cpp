// Where `moe data prepare` gets its documents: globbing, reading (gzip included), man page
// stripping, splitting into documents, and the synthetic generator.
#include <fcntl.h>
#include <fnmatch.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "train/data.h"

extern char** environ;

namespace moe::train {

namespace fs = std::filesystem;

const char* source_format_name(SourceFormat f) {
  switch (f) {
    case SourceFormat::kText:
      return "text";
    case SourceFormat::kLines:
      return "lines";
    case SourceFormat::kPython:
      return "python";
    case SourceFormat::kMan:
      return "man";
    case SourceFormat::kSyntheticArithmetic:
      return "synthetic-arithmetic";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// Globbing

namespace {

bool has_wildcard(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

std::vector<fs::path> sorted_entries(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) out.push_back(it->path());
  std::sort(out.begin(), out.end());
  return out;
}

bool is_real_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(fs::symlink_status(p, ec));
}

void add_all_files(const fs::path& dir, std::set<std::string>* out) {
  for (const fs::path& p : sorted_entries(dir)) {
    std::error_code ec;
    if (p.filename().string()[0] == '.') continue;
    if (is_real_dir(p))
      add_all_files(p, out);
    else if (fs::is_regular_file(p, ec))
      out->insert(p.string());
  }
}

void glob_walk(const fs::path& at, const std::vector<std::string>& parts, size_t i,
               std::set<std::string>* out) {
  std::error_code ec;
  if (i == parts.size()) {
    if (fs::is_regular_file(at, ec)) out->insert(at.string());
    return;
  }
  if (!fs::is_directory(at, ec)) return;
  const std::string& part = parts[i];
  if (part == "**") {
    if (i + 1 == parts.size()) return add_all_files(at, out);
    glob_walk(at, parts, i + 1, out);
    for (const fs::path& p : sorted_entries(at))
      if (p.filename().string()[0] != '.' && is_real_dir(p)) glob_walk(p, parts, i, out);
    return;
  }
  if (!has_wildcard(part)) return glob_walk(at / part, parts, i + 1, out);
  for (const fs::path& p : sorted_entries(at))
    if (::fnmatch(part.c_str(), p.filename().c_str(), FNM_PERIOD) == 0) glob_walk(p, parts, i + 1, out);
}

}  // namespace

std::vector<std::string> expand_glob(const std::string& pattern) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= pattern.size()) {
    size_t slash = pattern.find('/', start);
    if (slash == std::string::npos) slash = pattern.size();
    std::string part = pattern.substr(start, slash - start);
    if (!part.empty() && part != ".") parts.push_back(std::move(part));
    start = slash + 1;
  }
  std::set<std::string> found;
  glob_walk(!pattern.empty() && pattern[0] == '/' ? fs::path("/") : fs::path("."), parts, 0, &found);
  return {found.begin(), found.end()};
}

// ---------------------------------------------------------------------------------------------
// Man pages

namespace {

// groff special characters that carry meaning in running text; the rest become nothing.
std::string roff_special(std::string_view name) {
  static const std::pair<const char*, const char*> kMap[] = {
      {"em", "\u2014"}, {"en", "\u2013"}, {"bu", "\u2022"}, {"co", "\u00a9"}, {"rg", "\u00ae"},
      {"tm", "\u2122"}, {"aq", "'"},      {"dq", "\""},     {"lq", "\u201c"}, {"rq", "\u201d"},
      {"oq", "\u2018"}, {"cq", "\u2019"}, {"hy", "-"},      {"mi", "-"},      {"pl", "+"},
      {"mu", "\u00d7"}, {"de", "\u00b0"}, {">=", "\u2265"}, {"<=", "\u2264"}, {"->", "\u2192"},
      {"<-", "\u2190"}, {"ti", "~"},      {"ha", "^"},      {"rs", "\\"},     {"ga", "`"},
      {"Fo", "\u00ab"}, {"Fc", "\u00bb"}, {"ul", "_"},      {"ba", "|"},      {"or", "|"},
  };
  for (const auto& [k, v] : kMap)
    if (name == k) return v;
  return "";
}

// Reads an escape's name argument at s[i]: "(xx", "[name]" or one character; advances i.
std::string_view escape_name(std::string_view s, size_t* i) {
  if (*i >= s.size()) return {};
  if (s[*i] == '(') {
    const size_t start = *i + 1;
    *i = std::min(s.size(), start + 2);
    return s.substr(start, *i - start);
  }
  if (s[*i] == '[') {
    const size_t start = *i + 1;
    size_t end = s.find(']', start);
    if (end == std::string_view::npos) end = s.size();
    *i = std::min(s.size(), end + 1);
    return s.substr(start, end - start);
  }
  return s.substr((*i)++, 1);
}

// Skips a quoted escape argument such as \h'1i' or \w'text'.
void skip_quoted(std::string_view s, size_t* i) {
  if (*i >= s.size()) return;
  const char q = s[*i];
  const size_t end = s.find(q, *i + 1);
  *i = end == std::string_view::npos ? s.size() : end + 1;
}

std::string roff_text(std::string_view s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i++];
    if (c != '\\') {
      out += c;
      continue;
    }
    if (i >= s.size()) break;
    const char e = s[i++];
    switch (e) {
      case '"':
      case '#':
        return out;  // comment to end of line
      case '(':
      case '[':
        --i;
        out += roff_special(escape_name(s, &i));
        break;
      case 'f':
      case 'F':
      case '*':
      case 'n':
      case 'm':
      case 'M':
      case 'g':
      case 'k':
      case 'V':
      case 'Y':
      case 'O':
        if (e == 'n' && i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
        (void)escape_name(s, &i);
        break;
      case 's':
        if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
        if (i < s.size() && (s[i] == '(' || s[i] == '[' || s[i] == '\''))
          s[i] == '\'' ? skip_quoted(s, &i) : (void)escape_name(s, &i);
        else
          while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
        break;
      case 'h':
      case 'v':
      case 'w':
      case 'o':
      case 'l':
      case 'L':
      case 'X':
      case 'D':
      case 'b':
      case 'x':
      case 'H':
      case 'S':
      case 'A':
      case 'B':
      case 'R':
      case 'Z':
      case 'N':
      case 'C':
        skip_quoted(s, &i);
        break;
      case 'e':
      case '\\':
        out += '\\';
        break;
      case '~':
      case ' ':
      case '0':
        out += ' ';
        break;
      case 't':
        out += '\t';
        break;
      case '&':
      case '|':
      case '^':
      case ')':
      case ',':
      case '/':
      case ':':
      case 'c':
      case 'd':
      case 'u':
      case 'p':
      case 'r':
      case 'z':
      case '{':
      case '}':
        break;
      default:
        out += e;  // \- \. \' \` and the like stand for the character
    }
  }
  return out;
}

// A request's arguments: space-separated, "double quoted" ones may hold spaces.
std::vector<std::string> roff_args(std::string_view s) {
  std::vector<std::string> args;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    if (i >= s.size()) break;
    std::string a;
    if (s[i] == '"') {
      ++i;
      while (i < s.size()) {
        if (s[i] == '"' && i + 1 < s.size() && s[i + 1] == '"') {
          a += '"';
          i += 2;
        } else if (s[i] == '"') {
          ++i;
          break;
        } else {
          a += s[i++];
        }
      }
    } else {
      while (i < s.size() && s[i] != ' ' && s[i] != '\t') {
        if (s[i] == '\\' && i + 1 < s.size()) a += s[i++];
        a += s[i++];
      }
    }
    if (a.rfind("\\\"", 0) == 0) break;  // trailing comment
    args.push_back(std::move(a));
  }
  return args;
}

bool is_one_of(std::string_view name, std::initializer_list<std::string_view> names) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

std::string strip_roff(std::string_view roff) {
  std::string out;
  std::string para;  // filled text of the current paragraph
  bool fill = true;
  std::string skip_until;  // set inside .de/.ig blocks
  const auto add_text = [&](const std::string& t) {
    if (t.empty()) return;
    if (!fill) {
      para += t + "\n";
      return;
    }
    if (!para.empty() && para.back() != ' ' && para.back() != '\n') para += ' ';
    para += t;
  };
  const auto flush = [&] {
    while (!para.empty() && (para.back() == ' ' || para.back() == '\n')) para.pop_back();
    if (!para.empty()) out += para + "\n\n";
    para.clear();
  };
  size_t pos = 0;
  while (pos < roff.size()) {
    size_t nl = roff.find('\n', pos);
    if (nl == std::string_view::npos) nl = roff.size();
    std::string_view line = roff.substr(pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!skip_until.empty()) {
      if (line.substr(0, skip_until.size()) == skip_until) skip_until.clear();
      continue;
    }
    if (line.empty() || (line[0] != '.' && line[0] != '\'')) {
      if (line.empty() && fill) flush();
      add_text(roff_text(line));
      continue;
    }
    size_t i = 1;
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    const std::string_view name = line.substr(i, j - i);
    if (name.rfind("\\\"", 0) == 0 || name.empty()) continue;
    const std::vector<std::string> args = roff_args(line.substr(j));
    if (is_one_of(name, {"de", "de1", "am", "ig"})) {
      skip_until = name == "ig" && args.size() > 0 ? "." + args[0] : "..";
      continue;
    }
    if (is_one_of(name, {"SH", "SS", "Sh", "Ss"})) {
      flush();
      std::string heading;
      for (const std::string& a : args) heading += (heading.empty() ? "" : " ") + roff_text(a);
      if (!heading.empty()) out += heading + "\n\n";
    } else if (is_one_of(name, {"BR", "RB", "BI", "IB", "IR", "RI"})) {
      std::string joined;
      for (const std::string& a : args) joined += roff_text(a);
      add_text(joined);
    } else if (is_one_of(name,
                         {"B", "I", "SM", "SB", "Nm", "Nd", "Ar", "Pa", "Em", "Sy", "Li", "Dl", "Xr"})) {
      std::string joined;
      for (const std::string& a : args) joined += (joined.empty() ? "" : " ") + roff_text(a);
      add_text(joined);
    } else if (is_one_of(name, {"PP", "P", "LP", "TP", "HP", "sp", "Pp", "It"})) {
      flush();
    } else if (name == "IP") {
      flush();
      if (!args.empty()) add_text(roff_text(args[0]));
    } else if (name == "br") {
      if (fill) para += '\n';
    } else if (is_one_of(name, {"nf", "EX", "Bd"})) {
      flush();
      fill = false;
    } else if (is_one_of(name, {"fi", "EE", "Ed"})) {
      flush();
      fill = true;
    }
    // Every other request (layout, registers, strings, conditionals) carries no prose.
  }
  flush();
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reading and splitting

namespace {

// Appends s with invalid UTF-8 replaced by U+FFFD and CRLF by LF.
void append_clean_utf8(std::string_view s, std::string* out) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (!(c == '\r' && i + 1 < s.size() && s[i + 1] == '\n')) *out += static_cast<char>(c);
      ++i;
      continue;
    }
    size_t n = 0;
    uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4;
      cp = c & 0x07;
    }
    bool ok = n > 0 && i + n <= s.size();
    for (size_t k = 1; ok && k < n; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      ok = (cc & 0xC0) == 0x80;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid too.
    ok = ok && !(n == 3 && cp < 0x800) && !(n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) &&
         !(cp >= 0xD800 && cp <= 0xDFFF);
    if (ok) {
      out->append(s.substr(i, n));
      i += n;
    } else {
      *out += "\xEF\xBF\xBD";
      ++i;
    }
  }
}

bool is_blank(std::string_view s) { return s.find_first_not_of(" \t\n\r\f\v") == std::string_view::npos; }

std::string_view trim_end(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Length of the longest prefix of s that is at most max bytes and ends on a UTF-8 boundary.
size_t utf8_prefix(std::string_view s, size_t max) {
  if (s.size() <= max) return s.size();
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return n > 0 ? n : max;
}

// Splits s at the last separator within max bytes, else on a UTF-8 boundary.
void split_to_fit(std::string_view s, size_t max, std::string_view sep, std::vector<std::string_view>* out) {
  while (s.size() > max) {
    size_t cut = s.rfind(sep, max - sep.size());
    cut = cut == std::string_view::npos || cut == 0 ? utf8_prefix(s, max) : cut + sep.size();
    out->push_back(s.substr(0, cut));
    s.remove_prefix(cut);
  }
  if (!s.empty()) out->push_back(s);
}

}  // namespace

std::vector<std::string> split_documents(std::string_view raw, SourceFormat format, size_t max_bytes) {
  MOE_CHECK(max_bytes >= 16, "split_documents: max_bytes must be at least 16");
  std::string text;
  text.reserve(raw.size());
  append_clean_utf8(raw, &text);
  std::vector<std::string> docs;
  const auto emit = [&](std::string_view d) {
    d = trim_end(d);
    if (!is_blank(d)) docs.emplace_back(d);
  };
  std::string_view t = text;
  if (format == SourceFormat::kLines) {
    std::vector<std::string_view> lines;
    size_t pos = 0;
    while (pos < t.size()) {
      size_t nl = t.find('\n', pos);
      if (nl == std::string_view::npos) nl = t.size();
      lines.clear();
      split_to_fit(t.substr(pos, nl - pos), max_bytes, " ", &lines);
      for (std::string_view l : lines) emit(l);
      pos = nl + 1;
    }
    return docs;
  }
  // Paragraphs (each with the blank line after it), packed greedily into documents.
  std::vector<std::string_view> paras;
  size_t pos = 0;
  while (pos < t.size()) {
    size_t end = t.find("\n\n", pos);
    end = end == std::string_view::npos ? t.size() : end + 2;
    split_to_fit(t.substr(pos, end - pos), max_bytes, "\n", &paras);
    pos = end;
  }
  size_t doc_start = 0, doc_len = 0;  // the current document is text[doc_start, doc_start + doc_len)
  for (std::string_view p : paras) {
    const size_t off = static_cast<size_t>(p.data() - t.data());
    if (doc_len > 0 && doc_len + p.size() > max_bytes) {
      emit(t.substr(doc_start, doc_len));
      doc_len = 0;
    }
    if (doc_len == 0) doc_start = off;
    doc_len = off + p.size() - doc_start;
  }
  if (doc_len > 0) emit(t.substr(doc_start, doc_len));
  return docs;
}

namespace {

// Files are read whole; a bound keeps a stray disk image or a gzip bomb from exhausting memory.
constexpr size_t kMaxFileBytes = size_t{1} << 30;

std::string read_plain(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MOE_CHECK(fd >= 0, path, ": cannot open: ", std::strerror(errno));
  std::string s;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      fail(path, ": read failed: ", std::strerror(err));
    }
    if (n == 0) break;
    s.append(buf, static_cast<size_t>(n));
    if (s.size() > kMaxFileBytes) {
      ::close(fd);
      fail(path, ": larger than ", kMaxFileBytes >> 20, " MiB; split it into smaller files");
    }
  }
  ::close(fd);
  return s;
}

// `gzip -dc -- path` without a shell, so no file name needs quoting.
std::string read_gzip(const std::string& path) {
  int pipefd[2];
  MOE_CHECK(::pipe2(pipefd, O_CLOEXEC) == 0, path, ": pipe failed: ", std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  std::string p = path;
  char arg0[] = "gzip", arg1[] = "-dc", arg2[] = "--";
  char* argv[] = {arg0, arg1, arg2, p.data(), nullptr};
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, "gzip", &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipefd[1]);
  if (rc != 0) {
    ::close(pipefd[0]);
    fail(path, ": cannot run gzip to decompress it: ", std::strerror(rc));
  }
  std::string s;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(pipefd[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    s.append(buf, static_cast<size_t>(n));
    if (s.size() > kMaxFileBytes) break;
  }
  ::close(pipefd[0]);  // a gzip still writing gets SIGPIPE and exits
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  MOE_CHECK(s.size() <= kMaxFileBytes, path, ": decompresses to more than ", kMaxFileBytes >> 20,
            " MiB; split it into smaller files");
  MOE_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, path, ": gzip could not decompress it");
  return s;
}

}  // namespace

std::vector<std::string> read_documents(const std::string& path, SourceFormat format, size_t max_bytes) {
  const bool gz = path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  std::string text = gz ? read_gzip(path) : read_plain(path);
  if (text.find('\0') != std::string::npos) return {};
  if (format == SourceFormat::kMan) text = strip_roff(text);
  return split_documents(text, format, max_bytes);
}

}  // namespace moe::train
