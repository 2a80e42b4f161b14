// Jinja2's built-in filters (jinja2/filters.py) with transformers'
// tojson override. Filters that return generators in Jinja2 (map, select, unique, reverse,
// items, ...) return lists here, so that e.g. `tools | map(attribute='function') | tojson`
// works as in llama.cpp's and @huggingface/jinja's renderers.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/evaluator.h"
#include "tokenizer/jinja/text.h"

namespace moe::jinja {

Args::Args(std::string_view fn, CallArgs& call, std::initializer_list<std::string_view> params)
    : values_(params.size()), set_(params.size(), false) {
  if (call.positional.size() > params.size())
    fail(fn, "() takes at most ", params.size(), " argument(s) (", call.positional.size(), " given)");
  for (size_t i = 0; i < call.positional.size(); ++i) {
    values_[i] = call.positional[i];
    set_[i] = true;
  }
  for (auto& [key, v] : call.keyword) {
    const auto it = std::find(params.begin(), params.end(), key);
    if (it == params.end()) fail(fn, "() got an unexpected keyword argument '", key, "'");
    const auto i = static_cast<size_t>(it - params.begin());
    if (set_[i]) fail(fn, "() got multiple values for argument '", key, "'");
    values_[i] = v;
    set_[i] = true;
  }
}

int64_t int_arg(const Value& v, std::string_view what) {
  if (!v.is_integral()) fail(what, " must be an integer, not ", type_name(v));
  return v.as_int();
}

size_t width_arg(const Value& v, std::string_view what) {
  const int64_t w = int_arg(v, what);
  if (w > kMaxWidth) fail(what, " ", w, " is too large (limit ", kMaxWidth, ")");
  return static_cast<size_t>(std::max<int64_t>(0, w));
}

void fail_undefined(const Value& v) {
  fail(v.undefined_hint().empty() ? std::string("undefined value") : v.undefined_hint());
}

namespace {

std::string str_arg(const Value& v, std::string_view what) {
  if (!v.is_string()) fail(what, " must be a string, not ", type_name(v));
  return v.as_string();
}

// make_attrgetter: "a.b.0" looks up a, then b, then index 0, each with getitem semantics.
Value get_attribute_path(Evaluator& ev, Value item, const std::string& path) {
  size_t start = 0;
  while (start <= path.size()) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool numeric =
        !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    item = ev.getitem(item, numeric ? Value(std::stoll(part)) : Value(part));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return item;
}

// Key for sorting/unique/min/max: the attribute if given, lower-cased when case-insensitive.
Value sort_key(Evaluator& ev, const Value& item, const Value& attribute, bool case_sensitive) {
  Value key = attribute.is_none() || attribute.is_undefined()
                  ? item
                  : get_attribute_path(ev, item, to_str(attribute));
  if (!case_sensitive && key.is_string()) return Value(text::lower(key.as_string()));
  return key;
}

Value f_abs(Evaluator&, const Value& v, CallArgs& a) {
  Args("abs", a, {});
  if (v.kind() == Value::Kind::kFloat) return Value(std::fabs(v.as_double()));
  if (v.is_integral()) {
    if (v.as_int() == INT64_MIN) fail("integer overflow");
    return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
  }
  fail("bad operand type for abs(): '", type_name(v), "'");
}

Value f_attr(Evaluator& ev, const Value& v, CallArgs& a) {
  Args args("attr", a, {"name"});
  const std::string name = str_arg(args.get(0), "attribute name");
  if (v.is_dict() && method_kind(v, name) == MethodKind::kNone)
    return Value::undefined("'dict object' has no attribute '" + name + "'");
  return ev.getattr(v, name);
}

Value f_batch(Evaluator&, const Value& v, CallArgs& a) {
  Args args("batch", a, {"linecount", "fill_with"});
  const size_t n = width_arg(args.get(0), "batch() linecount");
  if (n == 0) fail("batch() linecount must be positive");
  std::vector<Value> out;
  std::vector<Value> cur;
  for (Value& x : iterate(v)) {
    cur.push_back(std::move(x));
    if (cur.size() == n) out.push_back(Value::make_list(std::exchange(cur, {})));
  }
  if (!cur.empty()) {
    if (args.has(1))
      while (cur.size() < n) cur.push_back(args.get(1));
    out.push_back(Value::make_list(std::move(cur)));
  }
  return Value::make_list(std::move(out));
}

Value f_capitalize(Evaluator&, const Value& v, CallArgs& a) {
  Args("capitalize", a, {});
  const std::string s = to_str(v);
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const bool first = i == 0;
    const char32_t cp = text::next_code_point(s, &i);
    first ? text::append_upper(&out, cp) : text::append_lower(&out, cp);
  }
  return Value(std::move(out));
}

Value f_center(Evaluator& ev, const Value& v, CallArgs& a) {
  Args args("center", a, {"width"});
  CallArgs m;
  m.positional.push_back(args.get_or(0, Value(80)));
  return call_method(ev, Value(to_str(v)), "center", m);
}

Value f_default(Evaluator&, const Value& v, CallArgs& a) {
  Args args("default", a, {"default_value", "boolean"});
  const bool boolean = truthy(args.get_or(1, Value(false)));
  if (v.is_undefined() || (boolean && !truthy(v))) return args.get_or(0, Value(""));
  return v;
}

Value f_dictsort(Evaluator& ev, const Value& v, CallArgs& a) {
  Args args("dictsort", a, {"case_sensitive", "by", "reverse"});
  if (!v.is_dict()) fail("dictsort() requires a mapping, not ", type_name(v));
  const bool cs = truthy(args.get_or(0, Value(false)));
  const std::string by = to_str(args.get_or(1, Value("key")));
  if (by != "key" && by != "value") fail("You can only sort by either \"key\" or \"value\"");
  const bool rev = truthy(args.get_or(2, Value(false)));
  std::vector<std::pair<Value, Value>> items = v.dict().items;
  std::stable_sort(items.begin(), items.end(), [&](const auto& x, const auto& y) {
    const Value kx = sort_key(ev, by == "key" ? x.first : x.second, Value::none(), cs);
    const Value ky = sort_key(ev, by == "key" ? y.first : y.second, Value::none(), cs);
    return rev ? compare(ky, kx, "<") < 0 : compare(kx, ky, "<") < 0;
  });
  std::vector<Value> out;
  for (auto& [k, x] : items) out.push_back(Value::make_list({k, x}, true));
  return Value::make_list(std::move(out));
}

Value f_escape(Evaluator&, const Value& v, CallArgs& a) {
  Args("escape", a, {});
  return Value(text::html_escape(to_str(v)));
}

Value f_first(Evaluator&, const Value& v, CallArgs& a) {
  Args("first", a, {});
  if (v.is_list()) {
    if (!v.list().items.empty()) return v.list().items.front();
  } else {
    auto items = iterate(v);
    if (!items.empty()) return items.front();
  }
  return Value::undefined("No first item, sequence was empty.");
}

Value f_last(Evaluator&, const Value& v, CallArgs& a) {
  Args("last", a, {});
  if (v.is_list()) {
    if (!v.list().items.empty()) return v.list().items.back();
  } else {
    auto items = iterate(v);
    if (!items.empty()) return items.back();
  }
  return Value::undefined("No last item, sequence was empty.");
}

std::optional<double> parse_float(const std::string& raw) {
  std::string s;
  for (char c : text::strip(raw, nullptr, true, true))
    if (c != '_') s.push_back(c);
  if (s.empty()) return std::nullopt;
  std::string low = text::lower(s);
  const bool neg = !low.empty() && low[0] == '-';
  const std::string body = (low[0] == '-' || low[0] == '+') ? low.substr(1) : low;
  if (body == "inf" || body == "infinity") return neg ? -HUGE_VAL : HUGE_VAL;
  if (body == "nan") return std::nan("");
  for (char c : body)
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == '+' || c == '-')) return std::nullopt;
  char* end = nullptr;
  const double d = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) return std::nullopt;
  return d;
}

Value f_float(Evaluator&, const Value& v, CallArgs& a) {
  Args args("float", a, {"default"});
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_number()) return Value(v.as_double());
  if (v.is_string())
    if (auto d = parse_float(v.as_string())) return Value(*d);
  return args.get_or(0, Value(0.0));
}

Value f_format(Evaluator& ev, const Value& v, CallArgs& a) {
  if (!a.positional.empty() && !a.keyword.empty())
    fail("can't handle positional and keyword arguments at the same time");
  if (!a.keyword.empty()) {
    DictData d;
    for (auto& [k, x] : a.keyword) d.set(Value(k), x);
    return Value(percent_format(ev, to_str(v), Value::make_dict(std::move(d))));
  }
  return Value(percent_format(ev, to_str(v), Value::make_list(a.positional, true)));
}

Value f_indent(Evaluator&, const Value& v, CallArgs& a) {
  Args args("indent", a, {"width", "first", "blank"});
  const Value width = args.get_or(0, Value(4));
  std::string ind;
  if (width.is_string()) {
    ind = width.as_string();
  } else if (width.is_integral()) {
    ind = std::string(width_arg(width, "indent() width"), ' ');
  } else {
    fail("indent() width must be an int or a string");
  }
  const bool first = truthy(args.get_or(1, Value(false)));
  const bool blank = truthy(args.get_or(2, Value(false)));
  if (v.is_undefined()) fail_undefined(v);
  if (!v.is_string()) fail("indent() needs a string, not ", type_name(v));  // Jinja2 does s += "\n"
  const std::vector<std::string> lines = text::split_lines(v.as_string() + "\n", false);
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i) out += "\n";
    if (i > 0 && (blank || !lines[i].empty())) out += ind;
    out += lines[i];
  }
  if (first) out = ind + out;
  return Value(std::move(out));
}

Value f_int(Evaluator&, const Value& v, CallArgs& a) {
  Args args("int", a, {"default", "base"});
  const Value fallback = args.get_or(0, Value(0));
  const int64_t base = int_arg(args.get_or(1, Value(10)), "int() base");
  if (base != 0 && (base < 2 || base > 36)) fail("int() base must be >= 2 and <= 36, or 0");
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_integral()) return Value(v.as_int());
  if (v.kind() == Value::Kind::kFloat) {
    const double d = v.as_double();
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return fallback;
    return Value(static_cast<int64_t>(d));
  }
  if (v.is_string()) {
    if (auto i = parse_int(v.as_string(), static_cast<int>(base))) return Value(*i);
    if (auto d = parse_float(v.as_string()); d && std::isfinite(*d) && std::fabs(*d) < 9.2e18)
      return Value(static_cast<int64_t>(*d));
  }
  return fallback;
}

Value f_items(Evaluator&, const Value& v, CallArgs& a) {
  Args("items", a, {});
  if (v.is_undefined()) return Value::make_list();
  if (!v.is_dict()) fail("Can only get item pairs from a mapping.");
  std::vector<Value> out;
  for (const auto& [k, x] : v.dict().items) out.push_back(Value::make_list({k, x}, true));
  return Value::make_list(std::move(out));
}

Value f_join(Evaluator& ev, const Value& v, CallArgs& a) {
  Args args("join", a, {"d", "attribute"});
  const std::string sep = to_str(args.get_or(0, Value("")));
  std::string out;
  bool first = true;
  for (const Value& x : iterate(v)) {
    if (!first) out += sep;
    first = false;
    out += to_str(args.has(1) && !args.get(1).is_none() ? get_attribute_path(ev, x, to_str(args.get(1))) : x);
    ev.check_string_size(out.size());
  }
  ev.charge_bytes(out.size());
  return Value(std::move(out));
}

Value f_length(Evaluator&, const Value& v, CallArgs& a) {
  Args("length", a, {});
  return Value(length(v));
}

Value f_list(Evaluator&, const Value& v, CallArgs& a) {
  Args("list", a, {});
  return Value::make_list(iterate(v));
}

Value f_lower(Evaluator&, const Value& v, CallArgs& a) {
  Args("lower", a, {});
  return Value(text::lower(to_str(v)));
}

Value f_upper(Evaluator&, const Value& v, CallArgs& a) {
  Args("upper", a, {});
  return Value(text::upper(to_str(v)));
}

Value f_map(Evaluator& ev, const Value& v, CallArgs& a) {
  std::vector<Value> out;
  if (!truthy(v)) return Value::make_list();  // Jinja2: `if value: for item in value: ...`
  const auto attr = std::find_if(a.keyword.begin(), a.keyword.end(),
                                 [](const auto& kv) { return kv.first == "attribute"; });
  if (attr != a.keyword.end()) {
    Args args("map", a, {"attribute", "default"});
    const std::string path = to_str(args.get(0));
    for (const Value& x : iterate(v)) {
      Value r = get_attribute_path(ev, x, path);
      out.push_back(r.is_undefined() && args.has(1) ? args.get(1) : r);
    }
    return Value::make_list(std::move(out));
  }
  if (a.positional.empty()) fail("map requires a filter argument");
  const std::string name = str_arg(a.positional[0], "map() filter name");
  CallArgs rest;
  rest.positional.assign(a.positional.begin() + 1, a.positional.end());
  rest.keyword = a.keyword;
  for (const Value& x : iterate(v)) {
    CallArgs copy = rest;
    out.push_back(ev.apply_filter(name, x, copy));
  }
  return Value::make_list(std::move(out));
}

Value minmax(Evaluator& ev, const Value& v, CallArgs& a, bool want_max) {
  Args args(want_max ? "max" : "min", a, {"case_sensitive", "attribute"});
  const bool cs = truthy(args.get_or(0, Value(false)));
  const Value attribute = args.get_or(1, Value::none());
  const auto items = iterate(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key = sort_key(ev, items[0], attribute, cs);
  for (size_t i = 1; i < items.size(); ++i) {
    Value k = sort_key(ev, items[i], attribute, cs);
    const int c = compare(k, best_key, want_max ? ">" : "<");
    if (want_max ? c > 0 : c < 0) {
      best = i;
      best_key = std::move(k);
    }
  }
  return items[best];
}

Value f_max(Evaluator& ev, const Value& v, CallArgs& a) { return minmax(ev, v, a, true); }
Value f_min(Evaluator& ev, const Value& v, CallArgs& a) { return minmax(ev, v, a, false); }

// select / reject / selectattr / rejectattr: keep items whose test (or truthiness) is `keep`.
Value select_impl(Evaluator& ev, const Value& v, CallArgs& a, bool by_attr, bool keep) {
  size_t next = 0;
  std::string attribute;
  if (by_attr) {
    if (a.positional.empty()) fail("Missing parameter for attribute name");
    attribute = to_str(a.positional[next++]);
  }
  std::string test;
  if (next < a.positional.size()) test = str_arg(a.positional[next++], "test name");
  if (!truthy(v)) return Value::make_list();  // Jinja2: `if value: for item in value: ...`
  CallArgs test_args;
  test_args.positional.assign(a.positional.begin() + static_cast<std::ptrdiff_t>(next), a.positional.end());
  test_args.keyword = a.keyword;
  std::vector<Value> out;
  for (const Value& x : iterate(v)) {
    const Value subject = by_attr ? get_attribute_path(ev, x, attribute) : x;
    bool ok;
    if (test.empty()) {
      ok = truthy(subject);
    } else {
      CallArgs copy = test_args;
      ok = ev.apply_test(test, subject, copy);
    }
    if (ok == keep) out.push_back(x);
  }
  return Value::make_list(std::move(out));
}

Value f_select(Evaluator& ev, const Value& v, CallArgs& a) { return select_impl(ev, v, a, false, true); }
Value f_reject(Evaluator& ev, const Value& v, CallArgs& a) { return select_impl(ev, v, a, false, false); }
Value f_selectattr(Evaluator& ev, const Value& v, CallArgs& a) { return select_impl(ev, v, a, true, true); }
Value f_rejectattr(Evaluator& ev, const Value& v, CallArgs& a) { return select_impl(ev, v, a, true, false); }

Value f_replace(Evaluator& ev, const Value& v, CallArgs& a) {
  Args args("replace", a, {"old", "new", "count"});
  CallArgs m;
  m.positional = {Value(to_str(args.get(0))), Value(to_str(args.get(1)))};
  if (args.has(2) && !args.get(2).is_none()) m.positional.push_back(args.get(2));
  return call_method(ev, Value(to_str(v)), "replace", m);
}

Value f_reverse(Evaluator&, const Value& v, CallArgs& a) {
  Args("reverse", a, {});
  std::vector<Value> items = iterate(v);
  std::reverse(items.begin(), items.end());
  if (v.is_string()) {
    std::string s;
    for (const Value& c : items) s += c.as_string();
    return Value(std::move(s));
  }
  return Value::make_list(std::move(items));
}

double round_half_even(double x, int64_t digits) {
  // Python's round(x, n): the correctly rounded decimal, ties to even on the exact binary value,
  // which is what printf's %.*f does.
  // From 2^52 up every double is an integer, so rounding to digits >= 0 changes nothing.
  if (!std::isfinite(x) || digits > 300 || (digits >= 0 && std::fabs(x) >= 4503599627370496.0)) return x;
  if (digits < 0) {
    const double p = std::pow(10.0, static_cast<double>(-digits));
    return std::nearbyint(x / p) * p;
  }
  char buf[512];
  std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(digits), x);
  return std::strtod(buf, nullptr);
}

Value f_round(Evaluator&, const Value& v, CallArgs& a) {
  Args args("round", a, {"precision", "method"});
  const int64_t precision = int_arg(args.get_or(0, Value(0)), "round() precision");
  const std::string method = to_str(args.get_or(1, Value("common")));
  if (method != "common" && method != "ceil" && method != "floor")
    fail("method must be common, ceil or floor");
  if (!v.is_number()) fail("type ", type_name(v), " doesn't define __round__ method");
  if (method == "common") {
    if (v.is_integral()) return Value(v.as_int());  // round(int, n) stays an int
    return Value(round_half_even(v.as_double(), precision));
  }
  const double p = std::pow(10.0, static_cast<double>(precision));
  const double x = v.as_double() * p;
  return Value((method == "ceil" ? std::ceil(x) : std::floor(x)) / p);
}

Value f_safe(Evaluator&, const Value& v, CallArgs& a) {
  Args("safe", a, {});
  return Value(to_str(v));
}

Value f_sort(Evaluator& ev, const Value& v, CallArgs& a) {
  Args args("sort", a, {"reverse", "case_sensitive", "attribute"});
  const bool rev = truthy(args.get_or(0, Value(false)));
  const bool cs = truthy(args.get_or(1, Value(false)));
  std::vector<std::string> attrs;  // "a,b" sorts by a, then b
  if (args.has(2) && !args.get(2).is_none()) {
    const std::string spec = to_str(args.get(2));
    size_t start = 0;
    while (true) {
      const size_t comma = spec.find(',', start);
      attrs.push_back(spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  std::vector<Value> items = iterate(v);
  std::vector<std::pair<std::vector<Value>, size_t>> keyed;
  for (size_t i = 0; i < items.size(); ++i) {
    std::vector<Value> key;
    if (attrs.empty()) key.push_back(sort_key(ev, items[i], Value::none(), cs));
    for (const auto& at : attrs) key.push_back(sort_key(ev, items[i], Value(at), cs));
    keyed.emplace_back(std::move(key), i);
  }
  auto less = [](const std::vector<Value>& x, const std::vector<Value>& y) {
    for (size_t i = 0; i < x.size(); ++i) {
      const int c = compare(x[i], y[i], "<");
      if (c != 0) return c < 0;
    }
    return false;
  };
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return rev ? less(y.first, x.first) : less(x.first, y.first);
  });
  std::vector<Value> out;
  for (const auto& k : keyed) out.push_back(items[k.second]);
  return Value::make_list(std::move(out));
}

Value f_string(Evaluator&, const Value& v, CallArgs& a) {
  Args("string", a, {});
  return v.is_string() ? v : Value(to_str(v));
}

Value f_sum(Evaluator& ev, const Value& v, CallArgs& a) {
  Args args("sum", a, {"attribute", "start"});
  Value total = args.get_or(1, Value(0));
  for (const Value& x : iterate(v))
    total =
        binary_op(ev, "+", total,
                  args.has(0) && !args.get(0).is_none() ? get_attribute_path(ev, x, to_str(args.get(0))) : x);
  return total;
}

Value f_title(Evaluator&, const Value& v, CallArgs& a) {
  Args("title", a, {});
  // Jinja2 splits at runs of [-\s({\[<] and capitalises each piece.
  const std::string s = to_str(v);
  std::string out;
  bool at_start = true;
  for (size_t i = 0; i < s.size();) {
    const char32_t cp = text::next_code_point(s, &i);
    const bool sep = text::is_space(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
    if (sep) {
      text::append_utf8(&out, cp);
    } else if (at_start) {
      text::append_upper(&out, cp);
    } else {
      text::append_lower(&out, cp);
    }
    at_start = sep;
  }
  return Value(std::move(out));
}

Value f_tojson(Evaluator& ev, const Value& v, CallArgs& a) {
  // transformers: json.dumps(x, ensure_ascii=False, indent=indent, separators=separators,
  // sort_keys=sort_keys)
  Args args("tojson", a, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonOptions o;
  o.ensure_ascii = truthy(args.get_or(0, Value(false)));
  const Value indent = args.get_or(1, Value::none());
  if (indent.is_string()) {
    o.indent = indent.as_string();
  } else if (indent.is_integral()) {
    o.indent = std::string(width_arg(indent, "tojson() indent"), ' ');
  } else if (!indent.is_none()) {
    fail("tojson() indent must be an int, a string or None");
  }
  const Value seps = args.get_or(2, Value::none());
  if (seps.is_list() && seps.list().items.size() == 2) {
    o.separators = std::make_pair(to_str(seps.list().items[0]), to_str(seps.list().items[1]));
  } else if (!seps.is_none()) {
    fail("tojson() separators must be a pair of strings");
  }
  o.sort_keys = truthy(args.get_or(3, Value(false)));
  std::string json = to_json(v, o);
  ev.charge_bytes(json.size());
  ev.check_string_size(json.size());
  return Value(std::move(json));
}

Value f_trim(Evaluator&, const Value& v, CallArgs& a) {
  Args args("trim", a, {"chars"});
  const std::string s = to_str(v);
  if (args.has(0) && !args.get(0).is_none()) {
    const std::string chars = to_str(args.get(0));
    const std::string_view cv = chars;
    return Value(std::string(text::strip(s, &cv, true, true)));
  }
  return Value(std::string(text::strip(s, nullptr, true, true)));
}

Value f_unique(Evaluator& ev, const Value& v, CallArgs& a) {
  Args args("unique", a, {"case_sensitive", "attribute"});
  const bool cs = truthy(args.get_or(0, Value(false)));
  const Value attribute = args.get_or(1, Value::none());
  std::vector<Value> seen;
  std::vector<Value> out;
  for (const Value& x : iterate(v)) {
    Value k = sort_key(ev, x, attribute, cs);
    if ((k.is_list() && !k.list().is_tuple) || k.is_dict()) fail("unhashable type: '", type_name(k), "'");
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, k); })) continue;
    seen.push_back(std::move(k));
    out.push_back(x);
  }
  return Value::make_list(std::move(out));
}

Value f_wordcount(Evaluator&, const Value& v, CallArgs& a) {
  Args("wordcount", a, {});
  const std::string s = to_str(v);
  int64_t words = 0;
  bool in_word = false;
  for (size_t i = 0; i < s.size();) {
    const char32_t cp = text::next_code_point(s, &i);
    const bool w = text::is_alpha(cp) || text::is_digit(cp) || cp == '_';
    if (w && !in_word) ++words;
    in_word = w;
  }
  return Value(words);
}

struct NamedFilter {
  std::string_view name;
  FilterFn fn;
};

constexpr NamedFilter kFilters[] = {
    {"abs", f_abs},
    {"attr", f_attr},
    {"batch", f_batch},
    {"capitalize", f_capitalize},
    {"center", f_center},
    {"count", f_length},
    {"d", f_default},
    {"default", f_default},
    {"dictsort", f_dictsort},
    {"e", f_escape},
    {"escape", f_escape},
    {"first", f_first},
    {"float", f_float},
    {"forceescape", f_escape},
    {"format", f_format},
    {"indent", f_indent},
    {"int", f_int},
    {"items", f_items},
    {"join", f_join},
    {"last", f_last},
    {"length", f_length},
    {"list", f_list},
    {"lower", f_lower},
    {"map", f_map},
    {"max", f_max},
    {"min", f_min},
    {"reject", f_reject},
    {"rejectattr", f_rejectattr},
    {"replace", f_replace},
    {"reverse", f_reverse},
    {"round", f_round},
    {"safe", f_safe},
    {"select", f_select},
    {"selectattr", f_selectattr},
    {"sort", f_sort},
    {"string", f_string},
    {"sum", f_sum},
    {"title", f_title},
    {"tojson", f_tojson},
    {"trim", f_trim},
    {"unique", f_unique},
    {"upper", f_upper},
    {"wordcount", f_wordcount},
};

}  // namespace

FilterFn find_filter(std::string_view name) {
  for (const auto& f : kFilters)
    if (f.name == name) return f.fn;
  return nullptr;
}

}  // namespace moe::jinja
