// Typed access to JSON fields with errors that name the file and the field path
// ("config.json: field text_config.hidden_size must be an integer, got string").
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mlxq::io {

class JsonFields {
 public:
  // `file` names the source in messages; `path` is the object's position ("text_config.").
  JsonFields(const nlohmann::json& obj, std::string file, std::string path = "");

  bool has(const char* key) const;
  int64_t get_int(const char* key) const;
  int64_t get_int(const char* key, int64_t fallback) const;
  double get_number(const char* key) const;
  double get_number(const char* key, double fallback) const;
  bool get_bool(const char* key, bool fallback) const;
  std::string get_string(const char* key) const;
  std::string get_string(const char* key, const std::string& fallback) const;
  std::vector<std::string> get_string_array(const char* key) const;
  // An int or an array of ints (eos_token_id is either).
  std::vector<int64_t> get_int_or_int_array(const char* key) const;
  JsonFields object(const char* key) const;  // required nested object
  const nlohmann::json& raw() const { return obj_; }
  std::string where(const char* key) const;  // "file: field path.key"

 private:
  const nlohmann::json& at(const char* key) const;
  const nlohmann::json& obj_;
  std::string file_, path_;
};

// Parses a JSON file, throwing Error naming it when it is missing or malformed.
nlohmann::json read_json_file(const std::string& path);

}  // namespace mlxq::io
