// JsonFields implementation.
#include "io/json_fields.h"

#include <fstream>

#include "core/error.h"

namespace mlxq::io {

namespace {
const char* type_name(const nlohmann::json& j) { return j.type_name(); }
}  // namespace

JsonFields::JsonFields(const nlohmann::json& obj, std::string file, std::string path)
    : obj_(obj), file_(std::move(file)), path_(std::move(path)) {
  check(obj_.is_object(), file_ + ": " + (path_.empty() ? std::string("top level")
                                                        : "field " + path_.substr(0, path_.size() - 1)) +
                              " must be a JSON object");
}

std::string JsonFields::where(const char* key) const {
  return file_ + ": field " + path_ + key;
}

bool JsonFields::has(const char* key) const {
  return obj_.contains(key) && !obj_.at(key).is_null();
}

const nlohmann::json& JsonFields::at(const char* key) const {
  check(has(key), where(key) + " is missing");
  return obj_.at(key);
}

int64_t JsonFields::get_int(const char* key) const {
  const auto& v = at(key);
  check(v.is_number_integer(), where(key) + " must be an integer, got " + type_name(v));
  return v.get<int64_t>();
}
int64_t JsonFields::get_int(const char* key, int64_t fallback) const {
  return has(key) ? get_int(key) : fallback;
}
double JsonFields::get_number(const char* key) const {
  const auto& v = at(key);
  check(v.is_number(), where(key) + " must be a number, got " + type_name(v));
  return v.get<double>();
}
double JsonFields::get_number(const char* key, double fallback) const {
  return has(key) ? get_number(key) : fallback;
}
bool JsonFields::get_bool(const char* key, bool fallback) const {
  if (!has(key)) return fallback;
  const auto& v = obj_.at(key);
  check(v.is_boolean(), where(key) + " must be a boolean, got " + type_name(v));
  return v.get<bool>();
}
std::string JsonFields::get_string(const char* key) const {
  const auto& v = at(key);
  check(v.is_string(), where(key) + " must be a string, got " + type_name(v));
  return v.get<std::string>();
}
std::string JsonFields::get_string(const char* key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}
std::vector<std::string> JsonFields::get_string_array(const char* key) const {
  const auto& v = at(key);
  check(v.is_array(), where(key) + " must be an array, got " + type_name(v));
  std::vector<std::string> out;
  for (const auto& e : v) {
    check(e.is_string(), where(key) + " must hold strings, found " + type_name(e));
    out.push_back(e.get<std::string>());
  }
  return out;
}
std::vector<int64_t> JsonFields::get_int_or_int_array(const char* key) const {
  const auto& v = at(key);
  std::vector<int64_t> out;
  if (v.is_number_integer()) return {v.get<int64_t>()};
  check(v.is_array(), where(key) + " must be an integer or an array of integers, got " + type_name(v));
  for (const auto& e : v) {
    check(e.is_number_integer(), where(key) + " must hold integers, found " + type_name(e));
    out.push_back(e.get<int64_t>());
  }
  return out;
}
JsonFields JsonFields::object(const char* key) const {
  const auto& v = at(key);
  check(v.is_object(), where(key) + " must be an object, got " + type_name(v));
  return JsonFields(v, file_, path_ + key + ".");
}

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  check(bool(in), path + ": cannot open");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": not valid JSON: " + e.what());
  }
}

}  // namespace mlxq::io
