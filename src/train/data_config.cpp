// mixture.json: strict parsing into a MixtureConfig, every error naming the key.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "train/data.h"

namespace moe::train {

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

struct KeyPath {
  const std::string& origin;
  std::string path;
  [[noreturn]] void error(const std::string& key, const std::string& msg) const {
    fail(origin, ": ", path.empty() ? key : path + "." + key, ": ", msg);
  }
};

void check_keys(const Json& obj, std::initializer_list<const char*> allowed, const KeyPath& where) {
  for (const auto& [key, value] : obj.items()) {
    bool ok = false;
    for (const char* a : allowed) ok = ok || key == a;
    if (!ok) where.error(key, "unknown key");
  }
}

int64_t get_int(const Json& obj, const char* key, int64_t lo, int64_t hi, const KeyPath& where) {
  const Json& v = obj.at(key);
  if (!v.is_number_integer()) where.error(key, "must be an integer");
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi))
    where.error(key, str_cat("must be <= ", hi));
  const int64_t x = v.get<int64_t>();
  if (x < lo) where.error(key, str_cat("must be >= ", lo));
  if (x > hi) where.error(key, str_cat("must be <= ", hi));
  return x;
}

const Json& require(const Json& obj, const char* key, const KeyPath& where) {
  if (!obj.contains(key)) where.error(key, "missing");
  return obj.at(key);
}

SourceFormat parse_format(const std::string& s, const KeyPath& where) {
  for (SourceFormat f : {SourceFormat::kText, SourceFormat::kLines, SourceFormat::kPython, SourceFormat::kMan,
                         SourceFormat::kSyntheticArithmetic})
    if (s == source_format_name(f)) return f;
  where.error("format", "'" + s + "' is not one of text, lines, python, man, synthetic-arithmetic");
}

DataSource parse_source(const Json& j, const KeyPath& where, const std::string& base_dir) {
  if (!j.is_object()) fail(where.origin, ": ", where.path, ": must be an object");
  check_keys(j, {"name", "weight", "format", "paths", "exclude", "documents"}, where);
  DataSource s;
  const Json& name = require(j, "name", where);
  if (!name.is_string() || name.get<std::string>().empty()) where.error("name", "must be a non-empty string");
  s.name = name.get<std::string>();
  const Json& weight = require(j, "weight", where);
  if (!weight.is_number()) where.error("weight", "must be a number");
  s.weight = weight.get<double>();
  if (!(s.weight > 0) || !std::isfinite(s.weight)) where.error("weight", "must be > 0");
  const Json& format = require(j, "format", where);
  if (!format.is_string()) where.error("format", "must be a string");
  s.format = parse_format(format.get<std::string>(), where);
  if (s.format == SourceFormat::kSyntheticArithmetic) {
    if (j.contains("paths") || j.contains("exclude"))
      where.error(j.contains("paths") ? "paths" : "exclude", "not allowed for a synthetic source");
    require(j, "documents", where);
    s.documents = get_int(j, "documents", 1, int64_t{1} << 40, where);
    return s;
  }
  if (j.contains("documents")) where.error("documents", "only for synthetic sources");
  if (j.contains("exclude")) {
    const Json& ex = j.at("exclude");
    if (!ex.is_array()) where.error("exclude", "must be an array of glob patterns");
    for (size_t i = 0; i < ex.size(); ++i) {
      if (!ex[i].is_string() || ex[i].get<std::string>().empty())
        where.error(str_cat("exclude[", i, "]"), "must be a non-empty string");
      std::string p = ex[i].get<std::string>();
      if (p[0] != '/' && !base_dir.empty()) p = (fs::path(base_dir) / p).string();
      s.exclude.push_back(std::move(p));
    }
  }
  const Json& paths = require(j, "paths", where);
  if (!paths.is_array() || paths.empty()) where.error("paths", "must be a non-empty array of glob patterns");
  for (size_t i = 0; i < paths.size(); ++i) {
    const std::string key = str_cat("paths[", i, "]");
    SourcePath sp{"", s.format};
    if (paths[i].is_object()) {
      const KeyPath item{where.origin, where.path + "." + key};
      check_keys(paths[i], {"glob", "format"}, item);
      const Json& glob = require(paths[i], "glob", item);
      if (!glob.is_string() || glob.get<std::string>().empty())
        item.error("glob", "must be a non-empty string");
      sp.glob = glob.get<std::string>();
      if (paths[i].contains("format")) {
        if (!paths[i].at("format").is_string()) item.error("format", "must be a string");
        sp.format = parse_format(paths[i].at("format").get<std::string>(), item);
        if (sp.format == SourceFormat::kSyntheticArithmetic) item.error("format", "must name a file format");
      }
    } else if (paths[i].is_string() && !paths[i].get<std::string>().empty()) {
      sp.glob = paths[i].get<std::string>();
    } else {
      where.error(key, "must be a non-empty string or {\"glob\": ..., \"format\": ...}");
    }
    if (sp.glob[0] != '/' && !base_dir.empty()) sp.glob = (fs::path(base_dir) / sp.glob).string();
    s.paths.push_back(std::move(sp));
  }
  return s;
}

}  // namespace

MixtureConfig parse_mixture_config(std::string_view json_text, const std::string& origin,
                                   const std::string& base_dir) {
  Json j;
  try {
    j = Json::parse(json_text);
  } catch (const Json::exception& e) {
    fail(origin, ": invalid JSON: ", e.what());
  }
  MOE_CHECK(j.is_object(), origin, ": must be a JSON object");
  const KeyPath top{origin, ""};
  check_keys(
      j, {"seed", "seq_len", "val_fraction", "shard_tokens", "train_tokens", "max_document_bytes", "sources"},
      top);
  MixtureConfig c;
  require(j, "seed", top);
  const Json& seed = j.at("seed");
  if (!seed.is_number_integer() || (!seed.is_number_unsigned() && seed.get<int64_t>() < 0))
    top.error("seed", "must be a non-negative integer");
  c.seed = seed.get<uint64_t>();
  require(j, "seq_len", top);
  c.seq_len = get_int(j, "seq_len", 1, int64_t{1} << 24, top);
  if (j.contains("val_fraction")) {
    if (!j.at("val_fraction").is_number()) top.error("val_fraction", "must be a number");
    c.val_fraction = j.at("val_fraction").get<double>();
    if (!(c.val_fraction >= 0 && c.val_fraction < 1)) top.error("val_fraction", "must be in [0, 1)");
  }
  if (j.contains("shard_tokens")) c.shard_tokens = get_int(j, "shard_tokens", 1, int64_t{1} << 40, top);
  if (j.contains("train_tokens")) c.train_tokens = get_int(j, "train_tokens", 0, int64_t{1} << 50, top);
  if (j.contains("max_document_bytes"))
    c.max_document_bytes = get_int(j, "max_document_bytes", 64, int64_t{1} << 30, top);
  const Json& sources = require(j, "sources", top);
  if (!sources.is_array() || sources.empty()) top.error("sources", "must be a non-empty array");
  std::set<std::string> names;
  for (size_t i = 0; i < sources.size(); ++i) {
    const KeyPath where{origin, str_cat("sources[", i, "]")};
    c.sources.push_back(parse_source(sources[i], where, base_dir));
    if (!names.insert(c.sources.back().name).second)
      where.error("name", "'" + c.sources.back().name + "' names another source too");
  }
  return c;
}

MixtureConfig load_mixture_config(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MOE_CHECK(f, path, ": cannot read");
  std::ostringstream ss;
  ss << f.rdbuf();
  return parse_mixture_config(ss.str(), path, fs::path(path).parent_path().string());
}

}  // namespace moe::train
