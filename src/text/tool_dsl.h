// Gemma-4 tool DSL as the 2026-07-09 chat template writes it (argument values, tool declarations,
// tool responses), and the slice of Python/Jinja2 value semantics those macros depend on.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"

namespace mlxq::text {

// Ordered so that key order is Python's dict insertion order: the template iterates some mappings
// without dictsort, prints dicts with str(), and dictsort itself breaks case-insensitive ties by
// insertion order.
using Json = nlohmann::ordered_json;

// Deepest array/object nesting the renderer walks. Python's Jinja2 stops with RecursionError at
// about 190 nested macro calls, so every input it renders is within this bound; past it we throw
// instead of risking the stack.
inline constexpr int kMaxDepth = 512;

// Python and Jinja2 semantics over JSON values. A `Ref` is what a template expression evaluates
// to: a JSON node, or nullptr for Jinja2's Undefined (a missing key, or a subscript of a value that
// is not a mapping).
namespace py {

using Ref = const Json*;

// `{{ x }}` / `x | string`: Python's str() of the value; "" for Undefined.
std::string str(Ref v);
// Python's repr() of a float (shortest round trip; 2.5, 3.0, 1e-07, 1e+16).
std::string repr_float(double x);
// Python's str.strip(), str.upper() and str.lower() on UTF-8 text (Jinja2's trim/upper filters,
// and dictsort's case folding). Whitespace is exact; case mapping is exact for ASCII, Latin-1,
// Latin Extended-A, Greek and Cyrillic and leaves other scripts unchanged.
std::string strip(std::string_view s);
std::string upper(std::string_view s);
std::string lower(std::string_view s);

bool truthy(Ref v);
inline bool is_mapping(Ref v) { return v != nullptr && v->is_object(); }
inline bool is_string(Ref v) { return v != nullptr && v->is_string(); }
// `x is sequence` holds for str, list, dict and also Undefined (it has __len__ and __getitem__).
inline bool is_sequence(Ref v) {
  return v == nullptr || v->is_string() || v->is_array() || v->is_object();
}
// Python ==: 1 == 1.0 == True, containers compare element-wise, dicts ignore order.
bool equal(const Json& a, const Json& b);
bool equals_str(Ref v, std::string_view s);

// `v['key']` in Jinja2's sandbox: the item of a mapping, else Undefined. Raises (throws Error
// naming `where`, the path of `v`) when `v` is itself Undefined, as Jinja2 does.
Ref getitem(Ref v, const char* key, const std::string& where);
// `d.get('key')` on a dict: the item, or None (a JSON null, not Undefined).
Ref get(const Json& d, const char* key);
// `needle in v`: key of a dict, element of a list, substring of a str; raises for other types.
bool contains(const Json& v, std::string_view needle, const std::string& where);
// `mapping | dictsort`: items sorted by key, case-insensitively, ties in insertion order.
std::vector<std::pair<const std::string*, const Json*>> dictsort(const Json& mapping);

// The code points of UTF-8 text, one string each (a malformed byte stands alone).
std::vector<std::string> characters(std::string_view s);

// Python's `for x in v`: list items, dict keys, or the characters of a str, each given to `f` as a
// JSON value; nothing for Undefined; raises (TypeError in Python) for numbers, booleans and None.
template <class F>
void for_each(Ref v, const std::string& where, F&& f) {
  if (v == nullptr) return;
  if (v->is_array()) {
    for (const Json& item : *v) f(item);
  } else if (v->is_object()) {
    for (const auto& kv : v->items()) f(Json(kv.key()));
  } else if (v->is_string()) {
    for (std::string& c : characters(v->get_ref<const std::string&>())) f(Json(std::move(c)));
  } else {
    throw Error("chat template: " + where + " must be a list (got " + std::string(v->type_name()) +
                ")");
  }
}

}  // namespace py

// format_argument(value, escape_keys): strings as <|"|>…<|"|>, bare (or quoted) dictsort keys,
// numbers as Python prints them, true/false/null. Undefined renders as "[]" (Jinja2 takes it for
// an empty sequence).
std::string format_argument(py::Ref value, bool escape_keys, int depth = 0);
// format_function_declaration(tool): "declaration:NAME{description:…,parameters:{…}}" for one
// element of `tools`; `where` is its path ("tools[0]") for error messages.
std::string format_function_declaration(const Json& tool, const std::string& where);
// format_tool_response_block(name, response): "<|tool_response>response:NAME{…}<tool_response|>".
std::string format_tool_response_block(const std::string& name, py::Ref response);

}  // namespace mlxq::text
