// Python's arithmetic operators and string formatting (printf-style % and str.format) for the
// Jinja interpreter. Integers are 64-bit: an overflow is an error rather than a big integer.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/evaluator.h"
#include "tokenizer/jinja/text.h"

namespace moe::jinja {

std::optional<int64_t> parse_int(std::string_view raw, int base) {
  std::string_view s = text::strip(raw, nullptr, true, true);
  bool neg = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.size() > 2 && s[0] == '0') {
    const char p = static_cast<char>(s[1] | 0x20);
    const int prefixed = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
    if (prefixed && (base == prefixed || base == 0)) {
      base = prefixed;
      s.remove_prefix(2);
      if (!s.empty() && s[0] == '_') s.remove_prefix(1);
    }
  }
  if (base == 0) base = 10;
  if (s.empty() || base < 2 || base > 36) return std::nullopt;
  int64_t v = 0;
  bool prev_digit = false;
  for (char c : s) {
    if (c == '_' && prev_digit) {
      prev_digit = false;
      continue;
    }
    const int lc = c | 0x20;
    const int d = (c >= '0' && c <= '9') ? c - '0' : (lc >= 'a' && lc <= 'z') ? lc - 'a' + 10 : 99;
    if (d >= base) return std::nullopt;
    if (__builtin_mul_overflow(v, base, &v) || __builtin_add_overflow(v, d, &v)) return std::nullopt;
    prev_digit = true;
  }
  if (!prev_digit) return std::nullopt;
  return neg ? -v : v;
}

namespace {

[[noreturn]] void unsupported(std::string_view op, const Value& a, const Value& b) {
  fail("unsupported operand type(s) for ", op, ": '", type_name(a), "' and '", type_name(b), "'");
}

bool is_float_op(const Value& a, const Value& b) {
  return a.kind() == Value::Kind::kFloat || b.kind() == Value::Kind::kFloat;
}

Value repeat(Evaluator& ev, const Value& seq, int64_t times) {
  if (times < 0) times = 0;
  const size_t n = seq.is_string() ? seq.as_string().size() : seq.list().items.size();
  if (n > 0 && static_cast<uint64_t>(times) > (uint64_t{1} << 40) / n) fail("repetition too large");
  ev.charge_bytes(n * static_cast<size_t>(times) * (seq.is_string() ? 1 : sizeof(Value)));
  if (seq.is_string()) {
    const std::string& s = seq.as_string();
    ev.check_string_size(s.size() * static_cast<size_t>(times));
    std::string out;
    out.reserve(s.size() * static_cast<size_t>(times));
    for (int64_t i = 0; i < times; ++i) out += s;
    return Value(std::move(out));
  }
  const auto& items = seq.list().items;
  ev.check_list_size(items.size() * static_cast<size_t>(times));
  std::vector<Value> out;
  for (int64_t i = 0; i < times; ++i) out.insert(out.end(), items.begin(), items.end());
  return Value::make_list(std::move(out), seq.list().is_tuple);
}

// Evaluates an overflow-checking builtin, e.g. checked([&](int64_t* r) { return __builtin_add_overflow(x, y,
// r); }).
template <class Op>
int64_t checked(Op op) {
  int64_t r = 0;
  if (op(&r)) fail("integer overflow");
  return r;
}

}  // namespace

Value binary_op(Evaluator& ev, std::string_view op, const Value& a, const Value& b) {
  if (op == "%" && a.is_string()) return Value(percent_format(ev, a.as_string(), b));
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  const bool nums = a.is_number() && b.is_number();
  if (op == "+") {
    if (nums) {
      if (is_float_op(a, b)) return Value(a.as_double() + b.as_double());
      return Value(checked([&](int64_t* r) { return __builtin_add_overflow(a.as_int(), b.as_int(), r); }));
    }
    if (a.is_string() && b.is_string()) {
      ev.check_string_size(a.as_string().size() + b.as_string().size());
      ev.charge_bytes(a.as_string().size() + b.as_string().size());
      return Value(a.as_string() + b.as_string());
    }
    if (a.is_list() && b.is_list() && a.list().is_tuple == b.list().is_tuple) {
      std::vector<Value> items = a.list().items;
      ev.check_list_size(items.size() + b.list().items.size());
      ev.charge_bytes(items.size() * sizeof(Value));
      items.insert(items.end(), b.list().items.begin(), b.list().items.end());
      return Value::make_list(std::move(items), a.list().is_tuple);
    }
    if (a.is_string()) fail("can only concatenate str (not \"", type_name(b), "\") to str");
    if (a.is_list())
      fail("can only concatenate ", type_name(a), " (not \"", type_name(b), "\") to ", type_name(a));
    unsupported(op, a, b);
  }
  if (op == "-") {
    if (!nums) unsupported(op, a, b);
    if (is_float_op(a, b)) return Value(a.as_double() - b.as_double());
    return Value(checked([&](int64_t* r) { return __builtin_sub_overflow(a.as_int(), b.as_int(), r); }));
  }
  if (op == "*") {
    if (nums) {
      if (is_float_op(a, b)) return Value(a.as_double() * b.as_double());
      return Value(checked([&](int64_t* r) { return __builtin_mul_overflow(a.as_int(), b.as_int(), r); }));
    }
    if ((a.is_string() || a.is_list()) && b.is_integral()) return repeat(ev, a, b.as_int());
    if ((b.is_string() || b.is_list()) && a.is_integral()) return repeat(ev, b, a.as_int());
    fail("can't multiply sequence by non-int of type '", type_name(a.is_number() ? a : b), "'");
  }
  if (op == "/") {
    if (!nums) unsupported(op, a, b);
    if (b.as_double() == 0) fail("division by zero");
    return Value(a.as_double() / b.as_double());
  }
  if (op == "//" || op == "%") {
    if (!nums) unsupported(op, a, b);
    if (is_float_op(a, b)) {
      const double x = a.as_double();
      const double y = b.as_double();
      if (y == 0) fail(op == "%" ? "float modulo" : "float floor division by zero");
      double mod = std::fmod(x, y);
      double div = (x - mod) / y;
      if (mod != 0 && ((y < 0) != (mod < 0))) {
        mod += y;
        div -= 1;
      }
      return op == "%" ? Value(mod) : Value(std::floor(div + 0.0));
    }
    const int64_t x = a.as_int();
    const int64_t y = b.as_int();
    if (y == 0) fail("integer division or modulo by zero");
    if (x == INT64_MIN && y == -1) fail("integer overflow");
    int64_t q = x / y;
    int64_t m = x % y;
    if (m != 0 && ((m < 0) != (y < 0))) {
      m += y;
      q -= 1;
    }
    return op == "%" ? Value(m) : Value(q);
  }
  if (op == "**") {
    if (!nums) unsupported(op, a, b);
    if (!is_float_op(a, b) && b.as_int() >= 0) {
      int64_t base = a.as_int();
      int64_t e = b.as_int();
      int64_t acc = 1;
      while (e > 0) {
        if (e & 1) acc = checked([&](int64_t* r) { return __builtin_mul_overflow(acc, base, r); });
        e >>= 1;
        if (e > 0) base = checked([&](int64_t* r) { return __builtin_mul_overflow(base, base, r); });
      }
      return Value(acc);
    }
    if (a.as_double() == 0 && b.as_double() < 0) fail("0.0 cannot be raised to a negative power");
    const double r = std::pow(a.as_double(), b.as_double());
    if (std::isinf(r) && std::isfinite(a.as_double()) && std::isfinite(b.as_double()))
      fail("(34, 'Numerical result out of range')");
    return Value(r);
  }
  fail("unknown operator ", op);
}

Value unary_op(std::string_view op, const Value& a) {
  if (a.is_undefined()) fail_undefined(a);
  if (!a.is_number()) fail("bad operand type for unary ", op, ": '", type_name(a), "'");
  if (op == "+") return a.kind() == Value::Kind::kFloat ? a : Value(a.as_int());
  if (a.kind() == Value::Kind::kFloat) return Value(-a.as_double());
  if (a.as_int() == INT64_MIN) fail("integer overflow");
  return Value(-a.as_int());
}

namespace {

struct Spec {
  char fill = ' ';
  char align = 0;  // < > ^ =
  char sign = '-';
  bool alt = false;
  bool zero = false;
  int width = -1;
  char grouping = 0;
  int precision = -1;
  char type = 0;
};

std::string pad_to(std::string s, const Spec& sp, char default_align) {
  const auto n = static_cast<int>(text::code_point_count(s));
  if (sp.width <= n) return s;
  const int total = sp.width - n;
  const char align = sp.align ? sp.align : default_align;
  const std::string fill(1, sp.fill);
  if (align == '=') {  // padding after the sign / prefix
    size_t cut = (!s.empty() && (s[0] == '-' || s[0] == '+' || s[0] == ' ')) ? 1 : 0;
    if (s.size() > cut + 1 && s[cut] == '0' && (s[cut + 1] | 0x20) >= 'b' && (s[cut + 1] | 0x20) <= 'x')
      cut += 2;
    std::string pad;
    for (int i = 0; i < total; ++i) pad += fill;
    return s.substr(0, cut) + pad + s.substr(cut);
  }
  const int left = align == '<' ? 0 : align == '>' ? total : total / 2;
  std::string out;
  for (int i = 0; i < left; ++i) out += fill;
  out += s;
  for (int i = 0; i < total - left; ++i) out += fill;
  return out;
}

std::string group_digits(const std::string& digits, char sep) {
  std::string out;
  const size_t n = digits.size();
  for (size_t i = 0; i < n; ++i) {
    if (i && (n - i) % 3 == 0) out.push_back(sep);
    out.push_back(digits[i]);
  }
  return out;
}

// format(value, spec) for the format mini-language (str.format and f-string rules).
std::string format_with_spec(const Value& v, const std::string& spec_text) {
  if (spec_text.empty()) return to_str(v);
  Spec sp;
  size_t i = 0;
  const std::string& t = spec_text;
  auto is_align = [](char c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  if (t.size() >= 2 && is_align(t[1])) {
    sp.fill = t[0];
    sp.align = t[1];
    i = 2;
  } else if (!t.empty() && is_align(t[0])) {
    sp.align = t[0];
    i = 1;
  }
  if (i < t.size() && (t[i] == '+' || t[i] == '-' || t[i] == ' ')) sp.sign = t[i++];
  if (i < t.size() && t[i] == '#') sp.alt = true, ++i;
  if (i < t.size() && t[i] == '0') {
    sp.zero = true;
    ++i;
  }
  while (i < t.size() && t[i] >= '0' && t[i] <= '9') {
    sp.width = std::max(sp.width, 0) * 10 + (t[i++] - '0');
    if (sp.width > kMaxWidth) fail("format width too large");
  }
  if (i < t.size() && (t[i] == ',' || t[i] == '_')) sp.grouping = t[i++];
  if (i < t.size() && t[i] == '.') {
    ++i;
    sp.precision = 0;
    while (i < t.size() && t[i] >= '0' && t[i] <= '9') {
      sp.precision = sp.precision * 10 + (t[i++] - '0');
      if (sp.precision > 1000) fail("format precision too large");
    }
  }
  if (i < t.size()) sp.type = t[i++];
  if (i != t.size()) fail("Invalid format specifier '", spec_text, "'");
  if (sp.zero && !sp.align) {
    sp.fill = '0';
    sp.align = '=';
  }
  if (v.is_string() || (!v.is_number() && (sp.type == 0 || sp.type == 's'))) {
    std::string s = to_str(v);
    if (sp.precision >= 0) {
      const auto chars = text::split_code_points(s);
      s.clear();
      for (size_t k = 0; k < chars.size() && k < static_cast<size_t>(sp.precision); ++k) s += chars[k];
    }
    return pad_to(s, sp, '<');
  }
  if (!v.is_number()) fail("unsupported format string passed to ", type_name(v), ".__format__");
  std::string body;
  const bool int_type = sp.type == 0 || sp.type == 'd' || sp.type == 'x' || sp.type == 'X' ||
                        sp.type == 'o' || sp.type == 'b' || sp.type == 'n' || sp.type == 'c';
  bool negative = false;
  if (v.is_integral() && int_type) {
    const int64_t x = v.as_int();
    negative = x < 0;
    const uint64_t mag = negative ? 0 - static_cast<uint64_t>(x) : static_cast<uint64_t>(x);
    if (sp.type == 'c') return pad_to(std::string(1, static_cast<char>(x)), sp, '<');
    const int base = sp.type == 'x' || sp.type == 'X' ? 16 : sp.type == 'o' ? 8 : sp.type == 'b' ? 2 : 10;
    std::string digits;
    uint64_t m = mag;
    do {
      digits.insert(digits.begin(), "0123456789abcdef"[m % static_cast<uint64_t>(base)]);
      m /= static_cast<uint64_t>(base);
    } while (m);
    if (sp.type == 'X') digits = text::upper(digits);
    if (sp.grouping) digits = group_digits(digits, sp.grouping);
    if (sp.alt && base != 10)
      body = std::string("0") + (sp.type == 'X' ? 'X' : sp.type == 'o' ? 'o' : sp.type == 'b' ? 'b' : 'x');
    body += digits;
  } else {
    const double d = v.as_double();
    negative = std::signbit(d) && !std::isnan(d);
    const double mag = std::fabs(d);
    char type = sp.type;
    if (type == 0 && sp.precision < 0) {
      body = text::format_float(mag);
    } else {
      const int prec = sp.precision < 0 ? 6 : sp.precision;
      char fmt[16];
      const double shown = type == '%' ? mag * 100 : mag;
      const char conv = type == 0 ? 'g' : type == '%' ? 'f' : type == 'n' ? 'g' : type;
      std::snprintf(fmt, sizeof fmt, "%%%s.%d%c", sp.alt ? "#" : "", prec, conv);
      std::vector<char> buf(static_cast<size_t>(prec) + 400);  // enough for %f of 1e308
      std::snprintf(buf.data(), buf.size(), fmt, shown);
      body = buf.data();
      if (type == '%') body += "%";
    }
    if (sp.grouping) {
      const size_t end = body.find_first_not_of("0123456789");
      body =
          group_digits(body.substr(0, end), sp.grouping) + (end == std::string::npos ? "" : body.substr(end));
    }
  }
  const std::string sign = negative ? "-" : sp.sign == '+' ? "+" : sp.sign == ' ' ? " " : "";
  return pad_to(sign + body, sp, '>');
}

// The value of a str.format field name: "0", "name", "", then .attr / [key] accessors.
Value resolve_field(Evaluator& ev, const std::string& field, CallArgs& args, size_t* auto_index) {
  size_t i = 0;
  while (i < field.size() && field[i] != '.' && field[i] != '[') ++i;
  const std::string head = field.substr(0, i);
  Value v;
  if (head.empty()) {
    if (*auto_index >= args.positional.size())
      fail("Replacement index ", *auto_index, " out of range for positional args tuple");
    v = args.positional[(*auto_index)++];
  } else if (std::all_of(head.begin(), head.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    const size_t idx = std::stoul(head);
    if (idx >= args.positional.size())
      fail("Replacement index ", idx, " out of range for positional args tuple");
    v = args.positional[idx];
  } else {
    const auto it = std::find_if(args.keyword.begin(), args.keyword.end(),
                                 [&](const auto& kv) { return kv.first == head; });
    if (it == args.keyword.end()) fail("KeyError: '", head, "'");
    v = it->second;
  }
  while (i < field.size()) {
    if (field[i] == '.') {
      size_t j = ++i;
      while (j < field.size() && field[j] != '.' && field[j] != '[') ++j;
      v = ev.getattr(v, field.substr(i, j - i));
      i = j;
    } else {
      const size_t close = field.find(']', i);
      if (close == std::string::npos) fail("Missing ']' in format string");
      const std::string key = field.substr(i + 1, close - i - 1);
      const bool numeric =
          !key.empty() && std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; });
      v = ev.getitem(v, numeric ? Value(std::stoll(key)) : Value(key));
      i = close + 1;
    }
  }
  return v;
}

}  // namespace

std::string brace_format(Evaluator& ev, const std::string& format, CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    const char c = format[i];
    if (c == '}') {
      if (i + 1 < format.size() && format[i + 1] == '}') {
        out += '}';
        ++i;
        continue;
      }
      fail("Single '}' encountered in format string");
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < format.size() && format[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    const size_t close = format.find('}', i);
    if (close == std::string::npos) fail("Single '{' encountered in format string");
    std::string field = format.substr(i + 1, close - i - 1);
    std::string spec;
    char conversion = 0;
    if (const size_t colon = field.find(':'); colon != std::string::npos) {
      spec = field.substr(colon + 1);
      field.resize(colon);
    }
    if (const size_t bang = field.find('!'); bang != std::string::npos) {
      if (bang + 2 != field.size()) fail("expected ':' after conversion specifier");
      conversion = field[bang + 1];
      field.resize(bang);
    }
    Value v = resolve_field(ev, field, args, &auto_index);
    if (conversion == 'r' || conversion == 'a') v = Value(to_repr(v));
    if (conversion == 's') v = Value(to_str(v));
    out += format_with_spec(v, spec);
    ev.check_string_size(out.size());
    i = close;
  }
  ev.charge_bytes(out.size());
  return out;
}

std::string percent_format(Evaluator& ev, const std::string& format, const Value& args) {
  std::vector<Value> positional;
  const bool tuple = args.is_list() && args.list().is_tuple;
  if (tuple) {
    positional = args.list().items;
  } else {
    positional.push_back(args);
  }
  size_t next = 0;
  bool used_mapping = false;
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      out += format[i];
      continue;
    }
    if (++i >= format.size()) fail("incomplete format");
    Value v;
    bool have_value = false;
    if (format[i] == '(') {
      const size_t close = format.find(')', i);
      if (close == std::string::npos) fail("incomplete format key");
      if (!args.is_dict()) fail("format requires a mapping");
      const Value* found = args.dict().find(std::string_view(format).substr(i + 1, close - i - 1));
      if (!found) fail("KeyError: '", format.substr(i + 1, close - i - 1), "'");
      v = *found;
      have_value = true;
      used_mapping = true;
      i = close + 1;
    }
    Spec sp;
    for (; i < format.size() && std::string_view("-+ #0").find(format[i]) != std::string_view::npos; ++i) {
      if (format[i] == '-') sp.align = '<';
      if (format[i] == '+' || (format[i] == ' ' && sp.sign != '+')) sp.sign = format[i];
      if (format[i] == '#') sp.alt = true;
      if (format[i] == '0') sp.zero = true;
    }
    auto number = [&](int* target) {
      if (i < format.size() && format[i] == '*') {
        if (next >= positional.size()) fail("not enough arguments for format string");
        *target = static_cast<int>(width_arg(positional[next++], "* width"));
        ++i;
        return;
      }
      while (i < format.size() && format[i] >= '0' && format[i] <= '9') {
        *target = std::max(*target, 0) * 10 + (format[i++] - '0');
        if (*target > kMaxWidth) fail("format width too large");
      }
    };
    number(&sp.width);
    if (i < format.size() && format[i] == '.') {
      ++i;
      sp.precision = 0;
      number(&sp.precision);
    }
    while (i < format.size() && (format[i] == 'h' || format[i] == 'l' || format[i] == 'L')) ++i;
    if (i >= format.size()) fail("incomplete format");
    const char conv = format[i];
    if (conv == '%') {
      out += '%';
      continue;
    }
    if (!have_value) {
      if (next >= positional.size()) fail("not enough arguments for format string");
      v = positional[next++];
    }
    std::string piece;
    if (conv == 's' || conv == 'r' || conv == 'a') {
      std::string s = conv == 's' ? to_str(v) : to_repr(v);
      if (sp.precision >= 0) {
        const auto chars = text::split_code_points(s);
        s.clear();
        for (size_t k = 0; k < chars.size() && k < static_cast<size_t>(sp.precision); ++k) s += chars[k];
      }
      Spec pad_spec;
      pad_spec.width = sp.width;
      piece = pad_to(std::move(s), pad_spec, sp.align ? '<' : '>');
    } else if (std::string_view("diuxXoeEfFgGc").find(conv) != std::string_view::npos) {
      if (!v.is_number()) fail("%", conv, " format: a real number is required, not ", type_name(v));
      const char c = conv == 'i' || conv == 'u' ? 'd' : conv;
      Value num = (c == 'd' || c == 'x' || c == 'X' || c == 'o' || c == 'c') && !v.is_integral()
                      ? Value(static_cast<int64_t>(v.as_double()))
                      : v;
      std::string spec;
      if (sp.align) spec += '<';
      if (sp.sign != '-') spec += sp.sign;
      if (sp.alt) spec += '#';
      if (sp.zero && !sp.align) spec += '0';
      if (sp.width >= 0) spec += std::to_string(sp.width);
      if (sp.precision >= 0 && c != 'd' && c != 'x' && c != 'X' && c != 'o')
        spec += "." + std::to_string(sp.precision);
      spec += c;
      if ((c == 'e' || c == 'E' || c == 'f' || c == 'F' || c == 'g' || c == 'G') && num.is_integral())
        num = Value(num.as_double());
      piece = format_with_spec(num, spec);
    } else {
      fail("unsupported format character '", std::string(1, conv), "'");
    }
    out += piece;
    ev.check_string_size(out.size());
  }
  ev.charge_bytes(out.size());
  // Python treats any non-tuple argument with __getitem__ (dict, list, Undefined) as a mapping,
  // so leaving it unused is not an error.
  const bool mapping_like = args.is_dict() || args.is_list() || args.is_undefined();
  const bool unused = tuple ? next < positional.size() : (next == 0 && !mapping_like);
  if (!used_mapping && unused) fail("not all arguments converted during string formatting");
  return out;
}

}  // namespace moe::jinja
