#include "tokenizer/jinja/value.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "tokenizer/jinja/text.h"

namespace moe::jinja {

namespace {

int nesting(const Value& v) {
  if (v.is_list()) return v.list().depth;
  if (v.is_dict()) return v.dict().depth;
  return 0;
}

void check_nesting(int depth) {
  if (depth > kMaxValueDepth) fail("value nested too deeply (more than ", kMaxValueDepth, " levels)");
}

}  // namespace

Value Value::make_list(std::vector<Value> items, bool tuple) {
  auto data = std::make_shared<ListData>();
  int depth = 0;
  for (const Value& v : items) depth = std::max(depth, nesting(v));
  check_nesting(depth + 1);
  data->items = std::move(items);
  data->is_tuple = tuple;
  data->depth = depth + 1;
  return Value(std::move(data), 0);
}

Value Value::make_dict() { return Value(std::make_shared<DictData>(), 0); }

Value Value::make_dict(DictData data) {
  int depth = 0;
  for (const auto& [k, v] : data.items) depth = std::max({depth, nesting(k), nesting(v)});
  check_nesting(depth + 1);
  data.depth = depth + 1;
  return Value(std::make_shared<DictData>(std::move(data)), 0);
}

Value Value::make_namespace() { return Value(std::make_shared<Namespace>(), 0); }

Value Value::callable(std::string name, std::function<Value(CallArgs&)> fn) {
  auto c = std::make_shared<const Callable>(Callable{std::move(name), std::move(fn)});
  return Value(CallablePtr(std::move(c)), 0);
}

const void* Value::identity() const {
  switch (kind()) {
    case Kind::kList:
      return std::get<ListPtr>(v_).get();
    case Kind::kDict:
      return std::get<DictPtr>(v_).get();
    case Kind::kNamespace:
      return std::get<NamespacePtr>(v_).get();
    case Kind::kCallable:
      return std::get<CallablePtr>(v_).get();
    default:
      return nullptr;
  }
}

const Value* DictData::find(const Value& key) const {
  if (key.is_string()) return find(std::string_view(key.as_string()));
  for (const auto& [k, v] : items)
    if (equals(k, key)) return &v;
  return nullptr;
}

const Value* DictData::find(std::string_view key) const {
  for (const auto& [k, v] : items)
    if (k.is_string() && k.as_string() == key) return &v;
  return nullptr;
}

void DictData::set(Value key, Value value) {
  for (auto& [k, v] : items) {
    if (equals(k, key)) {
      v = std::move(value);
      return;
    }
  }
  items.emplace_back(std::move(key), std::move(value));
}

const char* type_name(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "Undefined";
    case Value::Kind::kNone:
      return "NoneType";
    case Value::Kind::kBool:
      return "bool";
    case Value::Kind::kInt:
      return "int";
    case Value::Kind::kFloat:
      return "float";
    case Value::Kind::kString:
      return "str";
    case Value::Kind::kList:
      return v.list().is_tuple ? "tuple" : "list";
    case Value::Kind::kDict:
      return "dict";
    case Value::Kind::kNamespace:
      return "Namespace";
    case Value::Kind::kCallable:
      return "function";
  }
  return "object";
}

bool truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return false;
    case Value::Kind::kBool:
      return v.as_bool();
    case Value::Kind::kInt:
      return v.as_int() != 0;
    case Value::Kind::kFloat:
      return v.as_double() != 0.0;
    case Value::Kind::kString:
      return !v.as_string().empty();
    case Value::Kind::kList:
      return !v.list().items.empty();
    case Value::Kind::kDict:
      return !v.dict().items.empty();
    default:
      return true;
  }
}

namespace {

void check_depth(int depth) {
  if (depth > kMaxValueDepth) fail("value nested too deeply (or cyclic)");
}

void append_repr(std::string* out, const Value& v, int depth);

void append_dict_repr(std::string* out, const DictData& d, int depth) {
  out->push_back('{');
  bool first = true;
  for (const auto& [k, val] : d.items) {
    if (!first) out->append(", ");
    first = false;
    append_repr(out, k, depth + 1);
    out->append(": ");
    append_repr(out, val, depth + 1);
  }
  out->push_back('}');
}

void append_str(std::string* out, const Value& v, int depth) {
  check_depth(depth);
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return;
    case Value::Kind::kNone:
      out->append("None");
      return;
    case Value::Kind::kBool:
      out->append(v.as_bool() ? "True" : "False");
      return;
    case Value::Kind::kInt:
      out->append(std::to_string(v.as_int()));
      return;
    case Value::Kind::kFloat:
      out->append(text::format_float(v.as_double()));
      return;
    case Value::Kind::kString:
      out->append(v.as_string());
      return;
    case Value::Kind::kList: {
      const ListData& l = v.list();
      out->push_back(l.is_tuple ? '(' : '[');
      for (size_t i = 0; i < l.items.size(); ++i) {
        if (i) out->append(", ");
        append_repr(out, l.items[i], depth + 1);
      }
      if (l.is_tuple && l.items.size() == 1) out->push_back(',');
      out->push_back(l.is_tuple ? ')' : ']');
      return;
    }
    case Value::Kind::kDict:
      append_dict_repr(out, v.dict(), depth);
      return;
    case Value::Kind::kNamespace:
      out->append("<Namespace ");
      append_dict_repr(out, v.ns().attrs, depth);
      out->push_back('>');
      return;
    case Value::Kind::kCallable:
      out->append("<function " + v.callable().name + ">");
      return;
  }
}

void append_repr(std::string* out, const Value& v, int depth) {
  if (v.is_string()) {
    out->append(text::repr_string(v.as_string()));
  } else if (v.is_undefined()) {
    out->append("Undefined");
  } else {
    append_str(out, v, depth);
  }
}

bool equals_at(const Value& a, const Value& b, int depth) {
  check_depth(depth);
  if (a.is_number() && b.is_number()) {
    if (a.kind() == Value::Kind::kFloat || b.kind() == Value::Kind::kFloat)
      return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.as_string() == b.as_string();
    case Value::Kind::kList: {
      const ListData& x = a.list();
      const ListData& y = b.list();
      if (x.is_tuple != y.is_tuple || x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i)
        if (!equals_at(x.items[i], y.items[i], depth + 1)) return false;
      return true;
    }
    case Value::Kind::kDict: {
      const DictData& x = a.dict();
      const DictData& y = b.dict();
      if (x.items.size() != y.items.size()) return false;
      for (const auto& [k, v] : x.items) {
        const Value* other = y.find(k);
        if (!other || !equals_at(v, *other, depth + 1)) return false;
      }
      return true;
    }
    default:
      return a.identity() == b.identity();
  }
}

int compare_at(const Value& a, const Value& b, std::string_view op, int depth) {
  check_depth(depth);
  if (a.is_number() && b.is_number()) {
    if (a.kind() == Value::Kind::kFloat || b.kind() == Value::Kind::kFloat) {
      const double x = a.as_double();
      const double y = b.as_double();
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    const int64_t x = a.as_int();
    const int64_t y = b.as_int();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.as_string().compare(b.as_string());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_list() && b.is_list() && a.list().is_tuple == b.list().is_tuple) {
    const auto& x = a.list().items;
    const auto& y = b.list().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i)
      if (!equals_at(x[i], y[i], depth + 1)) return compare_at(x[i], y[i], op, depth + 1);
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  if (a.is_undefined() || b.is_undefined()) {
    const Value& u = a.is_undefined() ? a : b;
    fail(u.undefined_hint().empty() ? "undefined value" : u.undefined_hint());
  }
  fail("'", op, "' not supported between instances of '", type_name(a), "' and '", type_name(b), "'");
}

void append_json(std::string* out, const Value& v, const JsonOptions& o, int level) {
  check_depth(level);
  const std::string item_sep = o.separators ? o.separators->first : (o.indent ? "," : ", ");
  const std::string key_sep = o.separators ? o.separators->second : ": ";
  auto newline = [&](int lvl) {
    if (!o.indent) return;
    out->push_back('\n');
    for (int i = 0; i < lvl; ++i) out->append(*o.indent);
  };
  switch (v.kind()) {
    case Value::Kind::kNone:
      out->append("null");
      return;
    case Value::Kind::kBool:
      out->append(v.as_bool() ? "true" : "false");
      return;
    case Value::Kind::kInt:
      out->append(std::to_string(v.as_int()));
      return;
    case Value::Kind::kFloat: {
      const double d = v.as_double();
      if (std::isnan(d)) {
        out->append("NaN");
      } else if (std::isinf(d)) {
        out->append(d > 0 ? "Infinity" : "-Infinity");
      } else {
        out->append(text::format_float(d));
      }
      return;
    }
    case Value::Kind::kString:
      text::append_json_string(out, v.as_string(), o.ensure_ascii);
      return;
    case Value::Kind::kList: {
      const auto& items = v.list().items;
      if (items.empty()) {
        out->append("[]");
        return;
      }
      out->push_back('[');
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out->append(item_sep);
        newline(level + 1);
        append_json(out, items[i], o, level + 1);
      }
      newline(level);
      out->push_back(']');
      return;
    }
    case Value::Kind::kDict: {
      std::vector<std::pair<std::string, const Value*>> entries;
      for (const auto& [k, val] : v.dict().items) {
        std::string key;
        if (k.is_string()) {
          key = k.as_string();
        } else if (k.is_none() || k.kind() == Value::Kind::kBool || k.is_number()) {
          std::string tmp;
          append_json(&tmp, k, o, level + 1);
          key = tmp;
        } else {
          fail("keys must be str, int, float, bool or None, not ", type_name(k));
        }
        entries.emplace_back(std::move(key), &val);
      }
      if (o.sort_keys)
        std::stable_sort(entries.begin(), entries.end(),
                         [](const auto& x, const auto& y) { return x.first < y.first; });
      if (entries.empty()) {
        out->append("{}");
        return;
      }
      out->push_back('{');
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i) out->append(item_sep);
        newline(level + 1);
        text::append_json_string(out, entries[i].first, o.ensure_ascii);
        out->append(key_sep);
        append_json(out, *entries[i].second, o, level + 1);
      }
      newline(level);
      out->push_back('}');
      return;
    }
    default:
      fail("Object of type ", type_name(v), " is not JSON serializable");
  }
}

}  // namespace

std::string to_str(const Value& v) {
  if (v.is_string()) return v.as_string();
  std::string out;
  append_str(&out, v, 0);
  return out;
}

std::string to_repr(const Value& v) {
  std::string out;
  append_repr(&out, v, 0);
  return out;
}

bool equals(const Value& a, const Value& b) { return equals_at(a, b, 0); }

int compare(const Value& a, const Value& b, std::string_view op) { return compare_at(a, b, op, 0); }

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kString:
      if (!item.is_string()) fail("'in <string>' requires string as left operand, not ", type_name(item));
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::kList:
      for (const Value& x : container.list().items)
        if (equals(x, item)) return true;
      return false;
    case Value::Kind::kDict:
      if ((item.is_list() && !item.list().is_tuple) || item.is_dict())
        fail("unhashable type: '", type_name(item), "'");
      return container.dict().find(item) != nullptr;
    case Value::Kind::kUndefined:
      return false;
    default:
      fail("argument of type '", type_name(container), "' is not iterable");
  }
}

std::vector<Value> iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return {};
    case Value::Kind::kList:
      return v.list().items;
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      keys.reserve(v.dict().items.size());
      for (const auto& kv : v.dict().items) keys.push_back(kv.first);
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> chars;
      for (auto& c : text::split_code_points(v.as_string())) chars.emplace_back(std::move(c));
      return chars;
    }
    default:
      fail("'", type_name(v), "' object is not iterable");
  }
}

int64_t length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return 0;
    case Value::Kind::kString:
      return static_cast<int64_t>(text::code_point_count(v.as_string()));
    case Value::Kind::kList:
      return static_cast<int64_t>(v.list().items.size());
    case Value::Kind::kDict:
      return static_cast<int64_t>(v.dict().items.size());
    default:
      fail("object of type '", type_name(v), "' has no len()");
  }
}

namespace {

Value from_json_at(const nlohmann::ordered_json& j, int depth) {
  check_nesting(depth);
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::none();
    case nlohmann::ordered_json::value_t::boolean:
      return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const auto u = j.get<uint64_t>();
      return u > static_cast<uint64_t>(INT64_MAX) ? Value(static_cast<double>(u))
                                                  : Value(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& x : j) items.push_back(from_json_at(x, depth + 1));
      return Value::make_list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      DictData d;
      d.items.reserve(j.size());
      for (const auto& [k, x] : j.items()) d.items.emplace_back(Value(k), from_json_at(x, depth + 1));
      return Value::make_dict(std::move(d));
    }
    default:
      fail("chat template context: unsupported JSON value (binary data)");
  }
}

}  // namespace

Value from_json(const nlohmann::ordered_json& j) { return from_json_at(j, 0); }

std::string to_json(const Value& v, const JsonOptions& options) {
  std::string out;
  append_json(&out, v, options, 0);
  return out;
}

}  // namespace moe::jinja
