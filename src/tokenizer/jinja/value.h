// Values of the Jinja interpreter: Python's data model as far as chat templates see it.
// Lists, dicts and namespaces are shared by reference (like Python objects); everything else is
// a plain value. Dicts keep insertion order. Undefined carries a hint naming what was missing,
// used in the error message when an undefined value is misused (attribute access, arithmetic).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace moe::jinja {

class Value;
struct ListData;
struct DictData;
struct Namespace;
struct Callable;
using ListPtr = std::shared_ptr<ListData>;
using DictPtr = std::shared_ptr<DictData>;
using NamespacePtr = std::shared_ptr<Namespace>;
using CallablePtr = std::shared_ptr<const Callable>;

struct Undefined {
  std::string hint;  // e.g. "'foo' is undefined"; empty means the generic message
};

class Value {
 public:
  // Order matches the variant alternatives below.
  enum class Kind : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kNamespace,
    kCallable
  };

  Value() : v_(Undefined{}) {}
  Value(bool b) : v_(b) {}  // NOLINT: implicit like Python literals
  template <class T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  Value(T i) : v_(static_cast<int64_t>(i)) {}        // NOLINT
  Value(double d) : v_(d) {}                         // NOLINT
  Value(std::string s) : v_(std::move(s)) {}         // NOLINT
  Value(std::string_view s) : v_(std::string(s)) {}  // NOLINT
  Value(const char* s) : v_(std::string(s)) {}       // NOLINT

  static Value undefined(std::string hint) { return Value(Undefined{std::move(hint)}); }
  static Value none() { return Value(nullptr); }
  static Value make_list(std::vector<Value> items = {}, bool tuple = false);
  static Value make_dict();
  static Value make_dict(DictData data);
  static Value make_namespace();
  static Value callable(std::string name, std::function<Value(struct CallArgs&)> fn);

  Kind kind() const { return static_cast<Kind>(v_.index()); }
  bool is_undefined() const { return kind() == Kind::kUndefined; }
  bool is_none() const { return kind() == Kind::kNone; }
  bool is_string() const { return kind() == Kind::kString; }
  bool is_list() const { return kind() == Kind::kList; }
  bool is_dict() const { return kind() == Kind::kDict; }
  // int, float or bool (Python's bool is an int).
  bool is_number() const { return kind() == Kind::kBool || kind() == Kind::kInt || kind() == Kind::kFloat; }
  // int or bool: usable as an integer operand.
  bool is_integral() const { return kind() == Kind::kBool || kind() == Kind::kInt; }

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return kind() == Kind::kBool ? (as_bool() ? 1 : 0) : std::get<int64_t>(v_); }
  double as_double() const {
    return kind() == Kind::kFloat ? std::get<double>(v_) : static_cast<double>(as_int());
  }
  const std::string& as_string() const { return std::get<std::string>(v_); }
  ListData& list() const { return *std::get<ListPtr>(v_); }
  DictData& dict() const { return *std::get<DictPtr>(v_); }
  Namespace& ns() const { return *std::get<NamespacePtr>(v_); }
  const NamespacePtr& namespace_ptr() const { return std::get<NamespacePtr>(v_); }
  const Callable& callable() const { return *std::get<CallablePtr>(v_); }
  const std::string& undefined_hint() const { return std::get<Undefined>(v_).hint; }
  // Identity of a reference value (list, dict, namespace, callable); nullptr for plain values.
  const void* identity() const;

 private:
  explicit Value(Undefined u) : v_(std::move(u)) {}
  explicit Value(std::nullptr_t) : v_(nullptr) {}
  template <class T>
  explicit Value(std::shared_ptr<T> p, int) : v_(std::move(p)) {}

  std::variant<Undefined, std::nullptr_t, bool, int64_t, double, std::string, ListPtr, DictPtr, NamespacePtr,
               CallablePtr>
      v_;
};

// Lists and dicts record their nesting depth when built (they are immutable afterwards, as in
// Jinja2's immutable sandbox), so that deep structures are refused on construction instead of
// overflowing the stack when printed or destroyed. Namespaces count as leaves; the evaluator
// empties them at the end of a render, which also breaks reference cycles through them.
struct ListData {
  std::vector<Value> items;
  bool is_tuple = false;
  int depth = 1;
};

struct DictData {
  std::vector<std::pair<Value, Value>> items;
  int depth = 1;  // set by Value::make_dict()
  // Lookup by Python equality of keys (1 == 1.0 == True); nullptr when absent.
  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  void set(Value key, Value value);
};

struct Namespace {
  DictData attrs;  // string keys
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

struct Callable {
  std::string name;
  std::function<Value(CallArgs&)> fn;
};

// Python's type name, for error messages ("str", "int", "NoneType", "dict", ...).
const char* type_name(const Value& v);

// Python truthiness; Undefined is falsy.
bool truthy(const Value& v);

// str(v) and repr(v) as Python prints them (True, None, 1.0, ['a', 1], {'k': 'v'}).
// Undefined prints as the empty string.
std::string to_str(const Value& v);
std::string to_repr(const Value& v);

// Python ==.
bool equals(const Value& a, const Value& b);

// Python ordering for <, <=, >, >=: returns <0, 0 or >0; throws moe::Error (naming op) for
// types Python cannot order.
int compare(const Value& a, const Value& b, std::string_view op);

// Python's `a in b`.
bool contains(const Value& container, const Value& item);

// The items of a for loop over v: list items, dict keys, string code points; Undefined is empty.
// Throws for values that are not iterable.
std::vector<Value> iterate(const Value& v);

// len(v); Undefined has length 0. Throws for values without a length.
int64_t length(const Value& v);

// Conversions from and to JSON. from_json maps objects to dicts in their order.
Value from_json(const nlohmann::ordered_json& j);

// json.dumps(v, ensure_ascii, indent, separators, sort_keys) as Python writes it.
struct JsonOptions {
  bool ensure_ascii = false;
  std::optional<std::string> indent;                              // none: one line
  std::optional<std::pair<std::string, std::string>> separators;  // (item, key)
  bool sort_keys = false;
};
std::string to_json(const Value& v, const JsonOptions& options);

// Lists and dicts nested deeper than this are refused when built; values nested deeper (or
// cyclic through namespaces) are an error when printed, compared or serialised.
inline constexpr int kMaxValueDepth = 200;

}  // namespace moe::jinja
