// Python methods of str, dict and list values as Jinja2's ImmutableSandboxedEnvironment exposes
// them (methods that modify a dict or list are unsafe there), and the global functions of a
// transformers chat-template environment.
#include <algorithm>
#include <cmath>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/evaluator.h"
#include "tokenizer/jinja/text.h"

namespace moe::jinja {
namespace {

template <class Range>
bool in(std::string_view s, const Range& names) {
  return std::find(std::begin(names), std::end(names), s) != std::end(names);
}

constexpr std::string_view kStrMethods[] = {
    "strip",     "lstrip",     "rstrip",       "split",        "rsplit",    "splitlines", "startswith",
    "endswith",  "replace",    "upper",        "lower",        "title",     "capitalize", "swapcase",
    "casefold",  "find",       "rfind",        "index",        "rindex",    "count",      "join",
    "format",    "isdigit",    "isdecimal",    "isnumeric",    "isalpha",   "isalnum",    "isspace",
    "islower",   "isupper",    "istitle",      "zfill",        "center",    "ljust",      "rjust",
    "partition", "rpartition", "removeprefix", "removesuffix", "expandtabs"};
constexpr std::string_view kDictMethods[] = {"get", "items", "keys", "values", "copy"};
constexpr std::string_view kDictUnsafe[] = {"clear", "pop", "popitem", "setdefault", "update"};
constexpr std::string_view kListMethods[] = {"index", "count", "copy"};
constexpr std::string_view kListUnsafe[] = {"append", "clear",  "extend",  "insert",
                                            "pop",    "remove", "reverse", "sort"};

std::string str_param(const Value& v, std::string_view method) {
  if (!v.is_string()) fail(method, "() argument must be str, not ", type_name(v));
  return v.as_string();
}

// Code point index of a byte offset (Python indexes strings by code point).
int64_t cp_index(const std::string& s, size_t byte) {
  return static_cast<int64_t>(text::code_point_count(std::string_view(s).substr(0, byte)));
}

Value split(Evaluator& ev, const std::string& s, CallArgs& a, bool from_right) {
  Args args(from_right ? "rsplit" : "split", a, {"sep", "maxsplit"});
  const Value sep = args.get_or(0, Value::none());
  int64_t maxsplit = int_arg(args.get_or(1, Value(-1)), "maxsplit");
  std::vector<std::string> parts;
  if (sep.is_none()) {
    // Runs of whitespace separate; leading and trailing whitespace gives no empty parts.
    std::vector<std::pair<size_t, size_t>> words;  // byte ranges
    size_t i = 0;
    size_t start = std::string::npos;
    while (i < s.size()) {
      const size_t at = i;
      const bool space = text::is_space(text::next_code_point(s, &i));
      if (!space && start == std::string::npos) start = at;
      if (space && start != std::string::npos) {
        words.emplace_back(start, at);
        start = std::string::npos;
      }
    }
    if (start != std::string::npos) words.emplace_back(start, s.size());
    if (maxsplit < 0 || static_cast<size_t>(maxsplit) + 1 >= words.size()) {
      for (auto [b, e] : words) parts.push_back(s.substr(b, e - b));
    } else if (!from_right) {
      for (size_t k = 0; k < static_cast<size_t>(maxsplit); ++k)
        parts.push_back(s.substr(words[k].first, words[k].second - words[k].first));
      parts.push_back(s.substr(words[static_cast<size_t>(maxsplit)].first));
    } else {
      const size_t keep = words.size() - static_cast<size_t>(maxsplit);
      parts.push_back(s.substr(0, words[keep - 1].second));
      for (size_t k = keep; k < words.size(); ++k)
        parts.push_back(s.substr(words[k].first, words[k].second - words[k].first));
    }
  } else {
    const std::string d = str_param(sep, "split");
    if (d.empty()) fail("empty separator");
    if (!from_right) {
      size_t start = 0;
      while (true) {
        const size_t pos = maxsplit == 0 ? std::string::npos : s.find(d, start);
        if (pos == std::string::npos) break;
        parts.push_back(s.substr(start, pos - start));
        start = pos + d.size();
        if (maxsplit > 0) --maxsplit;
      }
      parts.push_back(s.substr(start));
    } else {
      size_t end = s.size();
      while (maxsplit != 0 && end >= d.size()) {
        const size_t pos = s.rfind(d, end - d.size());
        if (pos == std::string::npos) break;
        parts.push_back(s.substr(pos + d.size(), end - pos - d.size()));
        end = pos;
        if (maxsplit > 0) --maxsplit;
      }
      parts.push_back(s.substr(0, end));
      std::reverse(parts.begin(), parts.end());
    }
  }
  ev.check_list_size(parts.size());
  std::vector<Value> out;
  out.reserve(parts.size());
  for (auto& p : parts) out.emplace_back(std::move(p));
  return Value::make_list(std::move(out));
}

Value affix_test(const std::string& s, CallArgs& a, bool prefix) {
  Args args(prefix ? "startswith" : "endswith", a, {"affix"});
  std::vector<std::string> options;
  const Value& x = args.get(0);
  if (x.is_list() && x.list().is_tuple) {
    for (const Value& o : x.list().items) options.push_back(str_param(o, prefix ? "startswith" : "endswith"));
  } else {
    options.push_back(str_param(x, prefix ? "startswith" : "endswith"));
  }
  for (const std::string& o : options) {
    if (o.size() > s.size()) continue;
    if (prefix ? s.compare(0, o.size(), o) == 0 : s.compare(s.size() - o.size(), o.size(), o) == 0)
      return Value(true);
  }
  return Value(false);
}

Value pad(const std::string& s, CallArgs& a, const char* name, char align) {
  Args args(name, a, {"width", "fillchar"});
  const auto width = static_cast<int64_t>(width_arg(args.get(0), "width"));
  const std::string fill = args.has(1) ? str_param(args.get(1), name) : " ";
  if (text::code_point_count(fill) != 1) fail("The fill character must be exactly one character long");
  const auto n = static_cast<int64_t>(text::code_point_count(s));
  if (width <= n) return Value(s);
  const int64_t total = width - n;
  int64_t left = align == '<' ? 0 : align == '>' ? total : total / 2 + (total & width & 1);
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += fill;
  out += s;
  for (int64_t i = 0; i < total - left; ++i) out += fill;
  return Value(std::move(out));
}

Value predicate(const std::string& s, CallArgs& a, const std::string& name) {
  Args(name, a, {});
  if (name == "islower" || name == "isupper") {
    bool cased = false;
    for (size_t i = 0; i < s.size();) {
      const char32_t cp = text::next_code_point(s, &i);
      if (name == "islower" ? text::is_cased_upper(cp) : text::is_cased_lower(cp)) return Value(false);
      cased = cased || text::is_cased_upper(cp) || text::is_cased_lower(cp);
    }
    return Value(cased);
  }
  if (name == "istitle") {
    bool prev_cased = false;
    bool any = false;
    for (size_t i = 0; i < s.size();) {
      const char32_t cp = text::next_code_point(s, &i);
      const bool up = text::is_cased_upper(cp);
      const bool low = text::is_cased_lower(cp);
      if ((up && prev_cased) || (low && !prev_cased)) return Value(false);
      any = any || up;
      prev_cased = up || low;
    }
    return Value(any);
  }
  if (s.empty()) return Value(false);
  for (size_t i = 0; i < s.size();) {
    const char32_t cp = text::next_code_point(s, &i);
    bool ok;
    if (name == "isspace") {
      ok = text::is_space(cp);
    } else if (name == "isalpha") {
      ok = text::is_alpha(cp);
    } else if (name == "isalnum") {
      ok = text::is_alpha(cp) || text::is_digit(cp);
    } else {
      ok = text::is_digit(cp);
    }
    if (!ok) return Value(false);
  }
  return Value(true);
}

Value str_method(Evaluator& ev, const std::string& s, const std::string& name, CallArgs& a) {
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    Args args(name, a, {"chars"});
    const bool left = name != "rstrip";
    const bool right = name != "lstrip";
    if (args.has(0) && !args.get(0).is_none()) {
      const std::string chars = str_param(args.get(0), name);
      const std::string_view cv = chars;
      return Value(std::string(text::strip(s, &cv, left, right)));
    }
    return Value(std::string(text::strip(s, nullptr, left, right)));
  }
  if (name == "split" || name == "rsplit") return split(ev, s, a, name == "rsplit");
  if (name == "splitlines") {
    Args args(name, a, {"keepends"});
    std::vector<Value> out;
    for (auto& line : text::split_lines(s, truthy(args.get_or(0, Value(false)))))
      out.emplace_back(std::move(line));
    return Value::make_list(std::move(out));
  }
  if (name == "startswith" || name == "endswith") return affix_test(s, a, name == "startswith");
  if (name == "replace") {
    Args args(name, a, {"old", "new", "count"});
    const std::string old = str_param(args.get(0), name);
    const std::string repl = str_param(args.get(1), name);
    int64_t count = int_arg(args.get_or(2, Value(-1)), "count");
    std::string out;
    if (old.empty()) {  // inserts `repl` before every code point and at the end
      const auto chars = text::split_code_points(s);
      for (size_t i = 0; i <= chars.size(); ++i) {
        if (count != 0) {
          out += repl;
          if (count > 0) --count;
        }
        if (i < chars.size()) out += chars[i];
        ev.check_string_size(out.size());
      }
      return Value(std::move(out));
    }
    size_t start = 0;
    while (count != 0) {
      const size_t pos = s.find(old, start);
      if (pos == std::string::npos) break;
      out.append(s, start, pos - start);
      out += repl;
      ev.check_string_size(out.size());
      start = pos + old.size();
      if (count > 0) --count;
    }
    out.append(s, start, std::string::npos);
    ev.charge_bytes(out.size());
    return Value(std::move(out));
  }
  if (name == "upper" || name == "lower" || name == "casefold") {
    Args(name, a, {});
    return Value(name == "upper" ? text::upper(s) : text::lower(s));
  }
  if (name == "title" || name == "capitalize" || name == "swapcase") {
    Args(name, a, {});
    std::string out;
    bool prev_cased = false;
    bool first = true;
    for (size_t i = 0; i < s.size();) {
      const char32_t cp = text::next_code_point(s, &i);
      const bool cased = text::is_cased_upper(cp) || text::is_cased_lower(cp);
      if (name == "swapcase") {
        text::is_cased_upper(cp) ? text::append_lower(&out, cp) : text::append_upper(&out, cp);
      } else if (name == "capitalize") {
        first ? text::append_upper(&out, cp) : text::append_lower(&out, cp);
      } else {
        prev_cased ? text::append_lower(&out, cp) : text::append_upper(&out, cp);
      }
      prev_cased = cased;
      first = false;
    }
    return Value(std::move(out));
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    Args args(name, a, {"sub"});
    const std::string sub = str_param(args.get(0), name);
    if (name == "count") {
      if (sub.empty()) return Value(static_cast<int64_t>(text::code_point_count(s)) + 1);
      int64_t n = 0;
      for (size_t pos = s.find(sub); pos != std::string::npos; pos = s.find(sub, pos + sub.size())) ++n;
      return Value(n);
    }
    const size_t pos = name[0] == 'r' ? s.rfind(sub) : s.find(sub);
    if (pos == std::string::npos) {
      if (name == "index" || name == "rindex") fail("substring not found");
      return Value(-1);
    }
    return Value(cp_index(s, pos));
  }
  if (name == "join") {
    Args args(name, a, {"iterable"});
    std::string out;
    size_t i = 0;
    for (const Value& x : iterate(args.get(0))) {
      if (!x.is_string()) fail("sequence item ", i, ": expected str instance, ", type_name(x), " found");
      if (i++) out += s;
      out += x.as_string();
      ev.check_string_size(out.size());
    }
    ev.charge_bytes(out.size());
    return Value(std::move(out));
  }
  if (name == "format") return Value(brace_format(ev, s, a));
  if (name.size() > 2 && name[0] == 'i' && name[1] == 's') return predicate(s, a, name);
  if (name == "zfill") {
    Args args(name, a, {"width"});
    const auto width = static_cast<int64_t>(width_arg(args.get(0), "width"));
    const auto n = static_cast<int64_t>(text::code_point_count(s));
    if (width <= n) return Value(s);
    const size_t sign = !s.empty() && (s[0] == '-' || s[0] == '+') ? 1 : 0;
    return Value(s.substr(0, sign) + std::string(static_cast<size_t>(width - n), '0') + s.substr(sign));
  }
  if (name == "center") return pad(s, a, "center", '^');
  if (name == "ljust") return pad(s, a, "ljust", '<');
  if (name == "rjust") return pad(s, a, "rjust", '>');
  if (name == "partition" || name == "rpartition") {
    Args args(name, a, {"sep"});
    const std::string sep = str_param(args.get(0), name);
    if (sep.empty()) fail("empty separator");
    const size_t pos = name == "partition" ? s.find(sep) : s.rfind(sep);
    if (pos == std::string::npos)
      return name == "partition" ? Value::make_list({Value(s), Value(""), Value("")}, true)
                                 : Value::make_list({Value(""), Value(""), Value(s)}, true);
    return Value::make_list({Value(s.substr(0, pos)), Value(sep), Value(s.substr(pos + sep.size()))}, true);
  }
  if (name == "removeprefix" || name == "removesuffix") {
    Args args(name, a, {"affix"});
    const std::string x = str_param(args.get(0), name);
    if (name == "removeprefix" && s.compare(0, x.size(), x) == 0) return Value(s.substr(x.size()));
    if (name == "removesuffix" && x.size() <= s.size() && s.compare(s.size() - x.size(), x.size(), x) == 0)
      return Value(s.substr(0, s.size() - x.size()));
    return Value(s);
  }
  if (name == "expandtabs") {
    Args args(name, a, {"tabsize"});
    const auto tab = static_cast<int64_t>(width_arg(args.get_or(0, Value(8)), "tabsize"));
    std::string out;
    int64_t col = 0;
    for (size_t i = 0; i < s.size();) {
      const char32_t cp = text::next_code_point(s, &i);
      if (cp == '\t') {
        const int64_t n = tab > 0 ? tab - col % tab : 0;
        out.append(static_cast<size_t>(n), ' ');
        col += n;
      } else {
        text::append_utf8(&out, cp);
        col = (cp == '\n' || cp == '\r') ? 0 : col + 1;
      }
      ev.check_string_size(out.size());
    }
    return Value(std::move(out));
  }
  fail("'str' object has no attribute '", name, "'");
}

Value dict_method(const DictData& d, const std::string& name, CallArgs& a) {
  if (name == "get") {
    Args args(name, a, {"key", "default"});
    if (const Value* v = d.find(args.get(0))) return *v;
    return args.get_or(1, Value::none());
  }
  Args(name, a, {});
  std::vector<Value> out;
  if (name == "copy") return Value::make_dict(d);
  for (const auto& [k, v] : d.items) {
    if (name == "keys") {
      out.push_back(k);
    } else if (name == "values") {
      out.push_back(v);
    } else {
      out.push_back(Value::make_list({k, v}, true));
    }
  }
  return Value::make_list(std::move(out));
}

Value list_method(const ListData& l, const std::string& name, CallArgs& a) {
  if (name == "copy") {
    Args(name, a, {});
    return Value::make_list(l.items, l.is_tuple);
  }
  Args args(name, a, {"value"});
  int64_t count = 0;
  for (size_t i = 0; i < l.items.size(); ++i) {
    if (!equals(l.items[i], args.get(0))) continue;
    if (name == "index") return Value(i);
    ++count;
  }
  if (name == "index") fail(to_repr(args.get(0)), " is not in list");
  return Value(count);
}

}  // namespace

MethodKind method_kind(const Value& obj, std::string_view name) {
  switch (obj.kind()) {
    case Value::Kind::kString:
      return in(name, kStrMethods) ? MethodKind::kSafe : MethodKind::kNone;
    case Value::Kind::kDict:
      if (in(name, kDictMethods)) return MethodKind::kSafe;
      return in(name, kDictUnsafe) ? MethodKind::kUnsafe : MethodKind::kNone;
    case Value::Kind::kList:
      if (in(name, kListMethods) && (!obj.list().is_tuple || name != "copy")) return MethodKind::kSafe;
      return !obj.list().is_tuple && in(name, kListUnsafe) ? MethodKind::kUnsafe : MethodKind::kNone;
    default:
      return MethodKind::kNone;
  }
}

Value call_method(Evaluator& ev, const Value& obj, const std::string& name, CallArgs& args) {
  switch (obj.kind()) {
    case Value::Kind::kString:
      return str_method(ev, obj.as_string(), name, args);
    case Value::Kind::kDict:
      return dict_method(obj.dict(), name, args);
    case Value::Kind::kList:
      return list_method(obj.list(), name, args);
    default:
      fail("'", type_name(obj), "' object has no attribute '", name, "'");
  }
}

Value global_function(Evaluator& ev, std::string_view name) {
  if (name == "range") {
    return Value::callable("range", [&ev](CallArgs& a) {
      if (!a.keyword.empty()) fail("range() takes no keyword arguments");
      if (a.positional.empty() || a.positional.size() > 3)
        fail("range expected at most 3 arguments, got ", a.positional.size());
      for (const Value& v : a.positional)
        if (!v.is_integral()) fail("'", type_name(v), "' object cannot be interpreted as an integer");
      int64_t start = 0;
      int64_t stop = a.positional[0].as_int();
      int64_t step = 1;
      if (a.positional.size() >= 2) {
        start = a.positional[0].as_int();
        stop = a.positional[1].as_int();
      }
      if (a.positional.size() == 3) step = a.positional[2].as_int();
      if (step == 0) fail("range() arg 3 must not be zero");
      const double n = std::max(0.0, std::ceil((static_cast<double>(stop) - static_cast<double>(start)) /
                                               static_cast<double>(step)));
      if (n > static_cast<double>(kMaxRange))
        fail("Range too big. The sandbox blocks ranges larger than MAX_RANGE (", kMaxRange, ").");
      std::vector<Value> out;
      for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.emplace_back(i);
      ev.count_work(out.size());
      return Value::make_list(std::move(out));
    });
  }
  if (name == "namespace" || name == "dict") {
    const bool is_ns = name == "namespace";
    return Value::callable(std::string(name), [&ev, is_ns](CallArgs& a) {
      if (a.positional.size() > 1)
        fail(is_ns ? "namespace" : "dict", "() takes at most 1 positional argument");
      DictData d;
      if (!a.positional.empty()) {
        const Value& init = a.positional[0];
        if (init.is_dict()) {
          d = init.dict();
        } else {
          for (const Value& pair : iterate(init)) {
            const auto kv = iterate(pair);
            if (kv.size() != 2)
              fail("dictionary update sequence element has length ", kv.size(), "; 2 is required");
            d.set(kv[0], kv[1]);
          }
        }
      }
      for (auto& [k, v] : a.keyword) d.set(Value(k), v);
      if (!is_ns) return Value::make_dict(std::move(d));
      Value ns = ev.new_namespace();
      ns.ns().attrs = std::move(d);
      return ns;
    });
  }
  if (name == "joiner") {
    return Value::callable("joiner", [](CallArgs& a) {
      Args args("joiner", a, {"sep"});
      const std::string sep = to_str(args.get_or(0, Value(", ")));
      auto used = std::make_shared<bool>(false);
      return Value::callable("joiner", [sep, used](CallArgs&) {
        if (!*used) {
          *used = true;
          return Value("");
        }
        return Value(sep);
      });
    });
  }
  if (name == "raise_exception") {
    return Value::callable("raise_exception", [](CallArgs& a) -> Value {
      Args args("raise_exception", a, {"message"});
      throw TemplateRaised(to_str(args.get(0)));
    });
  }
  if (name == "strftime_now") {
    return Value::callable("strftime_now", [](CallArgs& a) {
      Args args("strftime_now", a, {"format"});
      const std::string format = to_str(args.get(0));
      const std::time_t now = std::time(nullptr);
      std::tm local{};
      localtime_r(&now, &local);
      std::string buf(256 + format.size() * 8, '\0');
      const size_t n = std::strftime(buf.data(), buf.size(), format.c_str(), &local);
      buf.resize(n);
      return Value(std::move(buf));
    });
  }
  return Value::undefined("'" + std::string(name) + "' is undefined");
}

}  // namespace moe::jinja
