// Jinja2's built-in tests (jinja2/tests.py): `x is defined`, `x is string`, `x is eq 1`, ...
#include <string>
#include <string_view>

#include "core/error.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/evaluator.h"
#include "tokenizer/jinja/text.h"

namespace moe::jinja {
namespace {

bool one_arg(CallArgs& a, const char* name, Value* out) {
  Args args(name, a, {"other"});
  *out = args.get(0);
  return true;
}

bool t_defined(Evaluator&, const Value& v, CallArgs& a) {
  Args("defined", a, {});
  return !v.is_undefined();
}
bool t_undefined(Evaluator&, const Value& v, CallArgs& a) {
  Args("undefined", a, {});
  return v.is_undefined();
}
bool t_none(Evaluator&, const Value& v, CallArgs& a) {
  Args("none", a, {});
  return v.is_none();
}
bool t_boolean(Evaluator&, const Value& v, CallArgs& a) {
  Args("boolean", a, {});
  return v.kind() == Value::Kind::kBool;
}
bool t_true(Evaluator&, const Value& v, CallArgs& a) {
  Args("true", a, {});
  return v.kind() == Value::Kind::kBool && v.as_bool();
}
bool t_false(Evaluator&, const Value& v, CallArgs& a) {
  Args("false", a, {});
  return v.kind() == Value::Kind::kBool && !v.as_bool();
}
bool t_integer(Evaluator&, const Value& v, CallArgs& a) {
  Args("integer", a, {});
  return v.kind() == Value::Kind::kInt;
}
bool t_float(Evaluator&, const Value& v, CallArgs& a) {
  Args("float", a, {});
  return v.kind() == Value::Kind::kFloat;
}
bool t_number(Evaluator&, const Value& v, CallArgs& a) {
  Args("number", a, {});
  return v.is_number();
}
bool t_string(Evaluator&, const Value& v, CallArgs& a) {
  Args("string", a, {});
  return v.is_string();
}
bool t_mapping(Evaluator&, const Value& v, CallArgs& a) {
  Args("mapping", a, {});
  return v.is_dict();
}
bool t_callable(Evaluator&, const Value& v, CallArgs& a) {
  Args("callable", a, {});
  return v.kind() == Value::Kind::kCallable || v.is_undefined();  // Undefined has __call__
}
bool t_escaped(Evaluator&, const Value&, CallArgs& a) {
  Args("escaped", a, {});
  return false;
}
bool t_iterable(Evaluator&, const Value& v, CallArgs& a) {
  Args("iterable", a, {});
  return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
}
bool t_sequence(Evaluator& ev, const Value& v, CallArgs& a) { return t_iterable(ev, v, a); }
bool t_sameas(Evaluator&, const Value& v, CallArgs& a) {
  Value o;
  one_arg(a, "sameas", &o);
  if (v.kind() != o.kind()) return false;
  if (v.identity()) return v.identity() == o.identity();
  return equals(v, o);
}
bool t_in(Evaluator&, const Value& v, CallArgs& a) {
  Value o;
  one_arg(a, "in", &o);
  return contains(o, v);
}
bool t_eq(Evaluator&, const Value& v, CallArgs& a) {
  Value o;
  one_arg(a, "eq", &o);
  return equals(v, o);
}
bool t_ne(Evaluator&, const Value& v, CallArgs& a) {
  Value o;
  one_arg(a, "ne", &o);
  return !equals(v, o);
}
bool t_lt(Evaluator&, const Value& v, CallArgs& a) {
  Value o;
  one_arg(a, "lt", &o);
  return compare(v, o, "<") < 0;
}
bool t_le(Evaluator&, const Value& v, CallArgs& a) {
  Value o;
  one_arg(a, "le", &o);
  return compare(v, o, "<=") <= 0;
}
bool t_gt(Evaluator&, const Value& v, CallArgs& a) {
  Value o;
  one_arg(a, "gt", &o);
  return compare(v, o, ">") > 0;
}
bool t_ge(Evaluator&, const Value& v, CallArgs& a) {
  Value o;
  one_arg(a, "ge", &o);
  return compare(v, o, ">=") >= 0;
}
// Jinja2: value % num == 0, value % 2 == 1, value % 2 == 0.
bool t_divisibleby(Evaluator& ev, const Value& v, CallArgs& a) {
  Value o;
  one_arg(a, "divisibleby", &o);
  return equals(binary_op(ev, "%", v, o), Value(0));
}
bool t_odd(Evaluator& ev, const Value& v, CallArgs& a) {
  Args("odd", a, {});
  return equals(binary_op(ev, "%", v, Value(2)), Value(1));
}
bool t_even(Evaluator& ev, const Value& v, CallArgs& a) {
  Args("even", a, {});
  return equals(binary_op(ev, "%", v, Value(2)), Value(0));
}
bool case_test(const Value& v, bool want_lower) {
  const std::string s = to_str(v);  // Jinja2: str(value).islower()
  bool cased = false;
  for (size_t i = 0; i < s.size();) {
    const char32_t cp = text::next_code_point(s, &i);
    if (want_lower ? text::is_cased_upper(cp) : text::is_cased_lower(cp)) return false;
    if (text::is_cased_upper(cp) || text::is_cased_lower(cp)) cased = true;
  }
  return cased;
}
bool t_lower(Evaluator&, const Value& v, CallArgs& a) {
  Args("lower", a, {});
  return case_test(v, true);
}
bool t_upper(Evaluator&, const Value& v, CallArgs& a) {
  Args("upper", a, {});
  return case_test(v, false);
}
bool t_filter(Evaluator&, const Value& v, CallArgs& a) {
  Args("filter", a, {});
  return v.is_string() && find_filter(v.as_string()) != nullptr;
}
bool t_test(Evaluator&, const Value& v, CallArgs& a) {
  Args("test", a, {});
  return v.is_string() && find_test(v.as_string()) != nullptr;
}

struct NamedTest {
  std::string_view name;
  TestFn fn;
};

constexpr NamedTest kTests[] = {
    {"!=", t_ne},
    {"<", t_lt},
    {"<=", t_le},
    {"==", t_eq},
    {">", t_gt},
    {">=", t_ge},
    {"boolean", t_boolean},
    {"callable", t_callable},
    {"defined", t_defined},
    {"divisibleby", t_divisibleby},
    {"eq", t_eq},
    {"equalto", t_eq},
    {"escaped", t_escaped},
    {"even", t_even},
    {"false", t_false},
    {"filter", t_filter},
    {"float", t_float},
    {"ge", t_ge},
    {"greaterthan", t_gt},
    {"gt", t_gt},
    {"in", t_in},
    {"integer", t_integer},
    {"iterable", t_iterable},
    {"le", t_le},
    {"lessthan", t_lt},
    {"lower", t_lower},
    {"lt", t_lt},
    {"mapping", t_mapping},
    {"ne", t_ne},
    {"none", t_none},
    {"number", t_number},
    {"odd", t_odd},
    {"sameas", t_sameas},
    {"sequence", t_sequence},
    {"string", t_string},
    {"test", t_test},
    {"true", t_true},
    {"undefined", t_undefined},
    {"upper", t_upper},
};

}  // namespace

TestFn find_test(std::string_view name) {
  for (const auto& t : kTests)
    if (t.name == name) return t.fn;
  return nullptr;
}

}  // namespace moe::jinja
