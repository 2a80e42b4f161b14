// Internal: the built-in filters, tests, globals, Python methods and operators the evaluator uses.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/value.h"

namespace moe::jinja {

class Evaluator;

// Filters and tests by name (Jinja2's builtins plus transformers' tojson override); nullptr when
// unknown.
FilterFn find_filter(std::string_view name);
TestFn find_test(std::string_view name);

// Global functions: range, namespace, dict, joiner, raise_exception, strftime_now. Returns an
// undefined value for other names.
Value global_function(Evaluator& ev, std::string_view name);

// Python methods of str, dict and list values (those the immutable sandbox allows).
enum class MethodKind { kNone, kSafe, kUnsafe };
MethodKind method_kind(const Value& obj, std::string_view name);
Value call_method(Evaluator& ev, const Value& obj, const std::string& name, CallArgs& args);

// Python's binary operators + - * / // % ** and unary -, +.
Value binary_op(Evaluator& ev, std::string_view op, const Value& a, const Value& b);
Value unary_op(std::string_view op, const Value& a);

// Python's printf-style `format % args` and str.format(*args, **kwargs).
std::string percent_format(Evaluator& ev, const std::string& format, const Value& args);
std::string brace_format(Evaluator& ev, const std::string& format, CallArgs& args);

// Fails with the message Jinja2 gives when an undefined value is used.
[[noreturn]] void fail_undefined(const Value& v);

// Binds call arguments to named parameters like a Python signature: positional first, then
// keywords; too many positionals, unknown or repeated keywords are errors naming fn.
class Args {
 public:
  Args(std::string_view fn, CallArgs& call, std::initializer_list<std::string_view> params);
  bool has(size_t i) const { return set_[i]; }
  const Value& get(size_t i) const { return values_[i]; }
  Value get_or(size_t i, Value fallback) const { return set_[i] ? values_[i] : std::move(fallback); }

 private:
  std::vector<Value> values_;
  std::vector<bool> set_;
};

// An integer argument (int or bool); fails naming `what` otherwise.
int64_t int_arg(const Value& v, std::string_view what);
// A width or size argument used to build a string or list: an integer in [0, 1 << 20] (negative
// counts as 0); larger values fail instead of allocating.
size_t width_arg(const Value& v, std::string_view what);
inline constexpr int64_t kMaxWidth = 1 << 20;

// Python's int(x) for the int filter and slice indices: bool/int/float; strings like int(s).
std::optional<int64_t> parse_int(std::string_view s, int base);

}  // namespace moe::jinja
