// Gemma-4 tool DSL (the format_argument / format_parameters / format_function_declaration /
// format_tool_response_block macros of the 2026-07-09 template) and the Python value semantics
// behind them: str(), float repr, truthiness, ==, `in`, dictsort, and the strip/upper/lower
// filters.
#include "text/tool_dsl.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>

namespace mlxq::text {

namespace {

constexpr std::string_view kQuote = "<|\"|>";  // Gemma's string delimiter token

std::string in_quotes(std::string_view s) {
  std::string out(kQuote);
  out += s;
  out += kQuote;
  return out;
}

[[noreturn]] void fail(const std::string& msg) { throw Error("chat template: " + msg); }

void check_depth(int depth) {
  if (depth > kMaxDepth)
    fail("JSON value nested deeper than " + std::to_string(kMaxDepth) + " levels");
}

// ---- UTF-8 ---------------------------------------------------------------------------------

// Decodes the code point at s[i], advancing i. A malformed byte (impossible in text nlohmann
// parsed, possible in values built in code) is returned alone with the 0x80000000 bit set, so it is
// never taken for a letter or whitespace and is re-encoded unchanged.
uint32_t next_cp(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  size_t n = b0 < 0x80 ? 1 : b0 >= 0xF0 && b0 < 0xF8 ? 4 : b0 >= 0xE0 ? 3 : b0 >= 0xC0 ? 2 : 0;
  if (n == 0 || i + n > s.size()) return 0x80000000u | static_cast<unsigned char>(s[i++]);
  uint32_t cp = n == 1 ? b0 : n == 2 ? (b0 & 0x1Fu) : n == 3 ? (b0 & 0x0Fu) : (b0 & 0x07u);
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0x80000000u | static_cast<unsigned char>(s[i++]);
    cp = (cp << 6) | (b & 0x3Fu);
  }
  i += n;
  return cp;
}

void put_cp(std::string& out, uint32_t cp) {
  if (cp & 0x80000000u) {
    out += static_cast<char>(cp & 0xFF);
  } else if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Python's str.isspace(), which str.strip() uses.
bool is_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Python's str.isprintable() for non-ASCII: false for the assigned Cc/Cf/Zs/Zl/Zp code points
// (Unicode 14) and private use. Unassigned code points count as printable here (Python escapes
// them).
bool is_printable(uint32_t c) {
  static constexpr uint32_t kNot[][2] = {
      {0x80, 0xA0},       {0xAD, 0xAD},       {0x600, 0x605},     {0x61C, 0x61C},
      {0x6DD, 0x6DD},     {0x70F, 0x70F},     {0x890, 0x891},     {0x8E2, 0x8E2},
      {0x1680, 0x1680},   {0x180E, 0x180E},   {0x2000, 0x200F},   {0x2028, 0x202F},
      {0x205F, 0x2064},   {0x2066, 0x206F},   {0x3000, 0x3000},   {0xD800, 0xF8FF},
      {0xFEFF, 0xFEFF},   {0xFFF9, 0xFFFB},   {0x110BD, 0x110BD}, {0x110CD, 0x110CD},
      {0x13430, 0x13438}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0001, 0xE0001},
      {0xE0020, 0xE007F}, {0xF0000, 0x10FFFF}};
  for (const auto& r : kNot)
    if (c >= r[0] && c <= r[1]) return false;
  return true;
}

// Case pairs as {first upper, last upper, lower - upper, stride}: every stride-th code point of the
// range is an upper-case letter whose lower case is at +delta, and the mapping is one-to-one, so
// the same table serves lower() and upper(). One-way and multi-character mappings are in
// case_special.
struct CasePairs {
  uint32_t first, last;
  int32_t delta;
  uint32_t stride;
};
constexpr CasePairs kCasePairs[] = {
    {0x41, 0x5A, 32, 1},     {0xC0, 0xD6, 32, 1},     {0xD8, 0xDE, 32, 1},
    {0x100, 0x12E, 1, 2},    {0x132, 0x136, 1, 2},    {0x139, 0x147, 1, 2},
    {0x14A, 0x176, 1, 2},    {0x178, 0x178, -121, 1}, {0x179, 0x17D, 1, 2},
    {0x370, 0x372, 1, 2},    {0x376, 0x376, 1, 1},    {0x37F, 0x37F, 116, 1},
    {0x386, 0x386, 38, 1},   {0x388, 0x38A, 37, 1},   {0x38C, 0x38C, 64, 1},
    {0x38E, 0x38F, 63, 1},   {0x391, 0x3A1, 32, 1},   {0x3A3, 0x3AB, 32, 1},
    {0x3CF, 0x3CF, 8, 1},    {0x3D8, 0x3EE, 1, 2},    {0x3F7, 0x3F7, 1, 1},
    {0x3F9, 0x3F9, -7, 1},   {0x3FA, 0x3FA, 1, 1},    {0x3FD, 0x3FF, -130, 1},
    {0x400, 0x40F, 80, 1},   {0x410, 0x42F, 32, 1},   {0x460, 0x480, 1, 2},
    {0x48A, 0x4BE, 1, 2},    {0x4C0, 0x4C0, 15, 1},   {0x4C1, 0x4CD, 1, 2},
    {0x4D0, 0x52E, 1, 2},    {0x531, 0x556, 48, 1},   {0x1E00, 0x1E94, 1, 2},
    {0x1EA0, 0x1EFE, 1, 2},  {0x2132, 0x2132, 28, 1}, {0x2160, 0x216F, 16, 1},
    {0x2183, 0x2183, 1, 1},  {0x24B6, 0x24CF, 26, 1}, {0x2C00, 0x2C2F, 48, 1},
    {0xFF21, 0xFF3A, 32, 1},
};

// Mappings that are not one-to-one pairs; returns nullptr when `c` has none.
const char32_t* case_special(uint32_t c, bool to_upper) {
  if (to_upper) {
    switch (c) {
      case 0xB5: return U"\u039C";
      case 0xDF: return U"SS";
      case 0x131: return U"I";
      case 0x149: return U"\u02BCN";
      case 0x17F: return U"S";
      case 0x345: return U"\u0399";
      case 0x390: return U"\u0399\u0308\u0301";
      case 0x3B0: return U"\u03A5\u0308\u0301";
      case 0x3C2: return U"\u03A3";
      case 0x3D0: return U"\u0392";
      case 0x3D1: return U"\u0398";
      case 0x3D5: return U"\u03A6";
      case 0x3D6: return U"\u03A0";
      case 0x3F0: return U"\u039A";
      case 0x3F1: return U"\u03A1";
      case 0x3F5: return U"\u0395";
      case 0x587: return U"\u0535\u0552";
      case 0x1E96: return U"H\u0331";
      case 0x1E97: return U"T\u0308";
      case 0x1E98: return U"W\u030A";
      case 0x1E99: return U"Y\u030A";
      case 0x1E9A: return U"A\u02BE";
      case 0x1E9B: return U"\u1E60";
      default: return nullptr;
    }
  }
  switch (c) {
    case 0x130: return U"i\u0307";
    case 0x3F4: return U"\u03B8";
    case 0x1E9E: return U"\u00DF";
    case 0x2126: return U"\u03C9";
    case 0x212A: return U"k";
    case 0x212B: return U"\u00E5";
    default: return nullptr;
  }
}

std::string change_case(std::string_view s, bool to_upper) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    uint32_t c = next_cp(s, i);
    if (const char32_t* special = case_special(c, to_upper)) {
      for (; *special; ++special) put_cp(out, *special);
      continue;
    }
    for (const CasePairs& p : kCasePairs) {
      const uint32_t lo = to_upper ? p.first + p.delta : p.first;
      if (c >= lo && c <= lo + (p.last - p.first) && (c - lo) % p.stride == 0) {
        c = to_upper ? c - p.delta : c + p.delta;
        break;
      }
    }
    put_cp(out, c);
  }
  return out;
}

// ---- str() / repr() --------------------------------------------------------------------------

void append_repr(std::string& out, const Json& v, int depth);

void append_repr_string(std::string& out, std::string_view s) {
  // Python picks double quotes only when the text has a single quote and no double quote.
  const char q =
      s.find('\'') != std::string_view::npos && s.find('"') == std::string_view::npos ? '"' : '\'';
  out += q;
  char buf[16];
  for (size_t i = 0; i < s.size();) {
    const uint32_t c = next_cp(s, i);
    if (c == static_cast<uint32_t>(q) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7F || (c >= 0x80 && c < 0x80000000u && !is_printable(c))) {
      const char* format = c <= 0xFF ? "\\x%02x" : c <= 0xFFFF ? "\\u%04x" : "\\U%08x";
      std::snprintf(buf, sizeof buf, format, c);
      out += buf;
    } else {
      put_cp(out, c);
    }
  }
  out += q;
}

void append_str(std::string& out, const Json& v, int depth) {
  check_depth(depth);
  switch (v.type()) {
    case Json::value_t::null: out += "None"; break;
    case Json::value_t::boolean: out += v.get<bool>() ? "True" : "False"; break;
    case Json::value_t::number_integer: out += std::to_string(v.get<int64_t>()); break;
    case Json::value_t::number_unsigned: out += std::to_string(v.get<uint64_t>()); break;
    case Json::value_t::number_float: out += py::repr_float(v.get<double>()); break;
    case Json::value_t::string: out += v.get_ref<const std::string&>(); break;
    case Json::value_t::array: {
      out += '[';
      bool first = true;
      for (const Json& item : v) {
        if (!first) out += ", ";
        first = false;
        append_repr(out, item, depth + 1);
      }
      out += ']';
      break;
    }
    case Json::value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& kv : v.items()) {
        if (!first) out += ", ";
        first = false;
        append_repr_string(out, kv.key());
        out += ": ";
        append_repr(out, kv.value(), depth + 1);
      }
      out += '}';
      break;
    }
    default: fail(std::string("cannot render a JSON value of type ") + v.type_name());
  }
}

void append_repr(std::string& out, const Json& v, int depth) {
  if (v.is_string())
    append_repr_string(out, v.get_ref<const std::string&>());
  else
    append_str(out, v, depth);
}

// Python's int/float equality with bool as 0/1, exact between ints and floats.
bool number_equal(const Json& a, const Json& b) {
  if (a.is_number_float() || b.is_number_float()) {
    const Json& f = a.is_number_float() ? a : b;
    const Json& o = a.is_number_float() ? b : a;
    const double x = f.get<double>();
    if (o.is_number_float()) return x == o.get<double>();
    if (!std::isfinite(x) || std::trunc(x) != x) return false;
    if (x < 0) {
      if (x < -9223372036854775808.0) return false;
      return o.is_number_integer() && !o.is_number_unsigned() &&
             o.get<int64_t>() == static_cast<int64_t>(x);
    }
    if (x >= 18446744073709551616.0) return false;
    const auto u = static_cast<uint64_t>(x);
    if (o.is_boolean()) return u == (o.get<bool>() ? 1u : 0u);
    if (o.is_number_unsigned()) return o.get<uint64_t>() == u;
    return o.get<int64_t>() >= 0 && static_cast<uint64_t>(o.get<int64_t>()) == u;
  }
  // Both are ints or bools: compare as (negative, magnitude).
  auto split = [](const Json& v, bool& neg) -> uint64_t {
    neg = false;
    if (v.is_boolean()) return v.get<bool>() ? 1 : 0;
    if (v.is_number_unsigned()) return v.get<uint64_t>();
    const int64_t i = v.get<int64_t>();
    neg = i < 0;
    return neg ? 0 - static_cast<uint64_t>(i) : static_cast<uint64_t>(i);
  };
  bool na = false, nb = false;
  const uint64_t ma = split(a, na), mb = split(b, nb);
  return na == nb && ma == mb;
}

bool equal_at(const Json& a, const Json& b, int depth) {
  check_depth(depth);
  const bool a_num = a.is_number() || a.is_boolean(), b_num = b.is_number() || b.is_boolean();
  if (a_num || b_num) return a_num && b_num && number_equal(a, b);
  if (a.type() != b.type()) return false;
  if (a.is_null()) return true;
  if (a.is_string()) return a.get_ref<const std::string&>() == b.get_ref<const std::string&>();
  if (a.is_array()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (!equal_at(a[i], b[i], depth + 1)) return false;
    return true;
  }
  if (a.is_object()) {
    if (a.size() != b.size()) return false;
    for (const auto& kv : a.items()) {
      const auto it = b.find(kv.key());
      if (it == b.end() || !equal_at(kv.value(), *it, depth + 1)) return false;
    }
    return true;
  }
  return false;
}

}  // namespace

// ---- py:: ------------------------------------------------------------------------------------

namespace py {

std::string str(Ref v) {
  std::string out;
  if (v != nullptr) append_str(out, *v, 0);
  return out;
}

std::string repr_float(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x < 0 ? "-inf" : "inf";
  // Shortest round-trip digits, then Python's 'r' layout: positional when -4 < exponent+1 <= 16.
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);
  const std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));
  std::string out;
  size_t i = 0;
  if (sci[0] == '-') {
    out += '-';
    i = 1;
  }
  const size_t e_pos = sci.find('e');
  std::string digits;
  for (size_t k = i; k < e_pos; ++k)
    if (sci[k] != '.') digits += sci[k];
  const int exp10 = std::stoi(std::string(sci.substr(e_pos + 1)));
  const int decpt = exp10 + 1;  // value = 0.DIGITS * 10^decpt
  const int nd = static_cast<int>(digits.size());
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0." + std::string(static_cast<size_t>(-decpt), '0') + digits;
    } else if (decpt >= nd) {
      out += digits + std::string(static_cast<size_t>(decpt - nd), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(decpt)) + "." +
             digits.substr(static_cast<size_t>(decpt));
    }
  } else {
    out += digits[0];
    if (nd > 1) out += "." + digits.substr(1);
    char e[16];
    std::snprintf(e, sizeof e, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    out += e;
  }
  return out;
}

std::string strip(std::string_view s) {
  size_t begin = 0, end = s.size();
  for (size_t i = 0; i < s.size();) {
    const size_t at = i;
    if (!is_space(next_cp(s, i))) {
      begin = at;
      break;
    }
    begin = i;
  }
  if (begin == s.size()) return {};
  for (size_t i = begin; i < s.size();) {
    const uint32_t c = next_cp(s, i);
    if (!is_space(c)) end = i;
  }
  return std::string(s.substr(begin, end - begin));
}

std::vector<std::string> characters(std::string_view s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const size_t start = i;
    next_cp(s, i);
    out.emplace_back(s.substr(start, i - start));
  }
  return out;
}

std::string upper(std::string_view s) { return change_case(s, true); }
std::string lower(std::string_view s) { return change_case(s, false); }

bool truthy(Ref v) {
  if (v == nullptr) return false;
  switch (v->type()) {
    case Json::value_t::boolean: return v->get<bool>();
    case Json::value_t::number_integer: return v->get<int64_t>() != 0;
    case Json::value_t::number_unsigned: return v->get<uint64_t>() != 0;
    case Json::value_t::number_float:
      return v->get<double>() != 0.0;  // NaN is truthy, as in Python
    case Json::value_t::string: return !v->get_ref<const std::string&>().empty();
    case Json::value_t::array:
    case Json::value_t::object: return !v->empty();
    case Json::value_t::binary: return !v->get_binary().empty();
    default: return false;  // null, discarded
  }
}

bool equal(const Json& a, const Json& b) { return equal_at(a, b, 0); }

bool equals_str(Ref v, std::string_view s) {
  return v != nullptr && v->is_string() && v->get_ref<const std::string&>() == s;
}

Ref getitem(Ref v, const char* key, const std::string& where) {
  if (v == nullptr)
    fail(where + " is undefined (missing, or its parent is not an object), so its '" + key +
         "' cannot be read");
  // Any other non-mapping yields Undefined. A dict without the key yields Undefined too, except
  // for 'items', where Jinja2 falls back to the dict's items() method: that is truthy but not a
  // mapping, and the template only asks `is mapping and ...` of it, so Undefined reads the same.
  if (!v->is_object()) return nullptr;
  const auto it = v->find(key);
  return it == v->end() ? nullptr : &*it;
}

Ref get(const Json& d, const char* key) {
  static const Json kNone;
  const auto it = d.find(key);
  return it == d.end() ? &kNone : &*it;
}

bool contains(const Json& v, std::string_view needle, const std::string& where) {
  if (v.is_object()) return v.find(needle) != v.end();
  if (v.is_array()) {
    for (const Json& item : v)
      if (equals_str(&item, needle)) return true;
    return false;
  }
  if (v.is_string()) return v.get_ref<const std::string&>().find(needle) != std::string::npos;
  fail(where + " must be an object (the template tests '" + std::string(needle) + "' in it), got " +
       v.type_name());
}

std::vector<std::pair<const std::string*, const Json*>> dictsort(const Json& mapping) {
  struct Item {
    std::string folded;
    size_t order;  // insertion order breaks ties, as Python's stable sort does
    const std::string* key;
    const Json* value;
  };
  std::vector<Item> items;
  items.reserve(mapping.size());
  for (const auto& kv : mapping.items()) items.push_back({lower(kv.key()), items.size(), &kv.key(), &kv.value()});
  // Byte order of UTF-8 is code-point order, which is how Python compares str. (std::sort with an
  // explicit tie-break rather than std::stable_sort, whose temporary buffer trips ASan's
  // alloc-dealloc check with clang 14 + libstdc++ 12.)
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return a.folded != b.folded ? a.folded < b.folded : a.order < b.order;
  });
  std::vector<std::pair<const std::string*, const Json*>> out;
  out.reserve(items.size());
  for (const Item& it : items) out.emplace_back(it.key, it.value);
  return out;
}

}  // namespace py

// ---- the DSL macros --------------------------------------------------------------------------

namespace {

void append_argument(std::string& out, const Json& v, bool escape_keys, int depth) {
  check_depth(depth);
  switch (v.type()) {
    case Json::value_t::null: out += "null"; break;
    case Json::value_t::boolean: out += v.get<bool>() ? "true" : "false"; break;
    case Json::value_t::string:
      out += kQuote;
      out += v.get_ref<const std::string&>();
      out += kQuote;
      break;
    case Json::value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, value] : py::dictsort(v)) {
        if (!first) out += ',';
        first = false;
        if (escape_keys) out += kQuote;
        out += *key;
        if (escape_keys) out += kQuote;
        out += ':';
        append_argument(out, *value, escape_keys, depth + 1);
      }
      out += '}';
      break;
    }
    case Json::value_t::array: {
      out += '[';
      bool first = true;
      for (const Json& item : v) {
        if (!first) out += ',';
        first = false;
        append_argument(out, item, escape_keys, depth + 1);
      }
      out += ']';
      break;
    }
    default: append_str(out, v, depth);  // numbers, as str() prints them
  }
}

// `<|"|>{{ item }}<|"|>` for each item of a `required` value, comma-separated.
void append_quoted_items(std::string& out, py::Ref list, const std::string& where) {
  bool first = true;
  py::for_each(list, where, [&](const Json& item) {
    if (!first) out += ',';
    first = false;
    out += in_quotes(py::str(&item));
  });
}

bool is_schema_keyword(const std::string& key) {
  return key == "description" || key == "type" || key == "properties" || key == "required" ||
         key == "nullable";
}

void append_parameters(std::string& out, const Json& properties, bool filter_keys, int depth,
                       const std::string& where);

// The `items:{…}` body of an ARRAY parameter: its keys in dictsort order, None values skipped.
void append_items(std::string& out, const Json& items, int depth, const std::string& where) {
  check_depth(depth);
  bool first = true;
  for (const auto& [key, value] : py::dictsort(items)) {
    if (value->is_null()) continue;
    if (!first) out += ',';
    first = false;
    const std::string at = where + "." + *key;
    if (*key == "properties") {
      out += "properties:{";
      if (value->is_object()) append_parameters(out, *value, false, depth + 1, at);
      out += '}';
    } else if (*key == "required") {
      out += "required:[";
      append_quoted_items(out, value, at);
      out += ']';
    } else if (*key == "type") {
      // A string type is upper-cased whole; anything else is iterated, upper-casing each item.
      Json upper;
      if (value->is_string()) {
        upper = py::upper(value->get_ref<const std::string&>());
      } else {
        upper = Json::array();
        py::for_each(value, at, [&](const Json& t) { upper.push_back(py::upper(py::str(&t))); });
      }
      out += "type:";
      append_argument(out, upper, true, depth + 1);
    } else {
      out += *key;
      out += ':';
      append_argument(out, *value, true, depth + 1);
    }
  }
}

// format_parameters(properties, required, filter_keys): one `name:{…}` entry per property. (The
// macro's `required` argument is never read, so it is not taken here.)
void append_parameters(std::string& out, const Json& properties, bool filter_keys, int depth,
                       const std::string& where) {
  check_depth(depth);
  bool found_first = false;
  for (const auto& [key, value] : py::dictsort(properties)) {
    if (filter_keys && is_schema_keyword(*key)) continue;
    const std::string at = where + "." + *key;
    if (found_first) out += ',';
    found_first = true;
    out += *key;
    out += ":{";
    bool add_comma = false;
    // Every later field is preceded by a comma once one field has been written.
    auto field = [&](std::string_view text) {
      if (add_comma) out += ',';
      add_comma = true;
      out += text;
    };
    const py::Ref description = py::getitem(value, "description", at);
    if (py::truthy(description)) field("description:" + in_quotes(py::str(description)));
    const std::string type = py::upper(py::str(py::getitem(value, "type", at)));
    if (type == "STRING") {
      const py::Ref values = py::getitem(value, "enum", at);
      if (py::truthy(values)) {
        field("enum:");
        append_argument(out, *values, true, depth + 1);
      }
    } else if (type == "ARRAY") {
      const py::Ref items = py::getitem(value, "items", at);
      if (py::is_mapping(items) && py::truthy(items)) {
        field("items:{");
        append_items(out, *items, depth + 1, at + ".items");
        out += '}';
      }
    }
    if (py::truthy(py::getitem(value, "nullable", at))) field("nullable:true");
    if (type == "OBJECT") {  // only an object's `type` can read OBJECT, so `value` is a mapping
      const py::Ref props = py::getitem(value, "properties", at);
      field("properties:{");
      if (py::is_mapping(props))
        append_parameters(out, *props, false, depth + 1, at + ".properties");
      else
        append_parameters(out, *value, true, depth + 1, at);  // the schema's own extra keys
      out += '}';
      const py::Ref required = py::getitem(value, "required", at);
      if (py::truthy(required)) {
        field("required:[");
        append_quoted_items(out, required, at + ".required");
        out += ']';
      }
    }
    field("type:" + in_quotes(type) + "}");
  }
}

}  // namespace

std::string format_argument(py::Ref value, bool escape_keys, int depth) {
  if (value == nullptr) return "[]";
  std::string out;
  append_argument(out, *value, escape_keys, depth);
  return out;
}

std::string format_function_declaration(const Json& tool, const std::string& where) {
  const std::string fw = where + ".function";
  const py::Ref fn = py::getitem(&tool, "function", where);
  const py::Ref name = py::getitem(fn, "name", fw);  // raises when `function` is missing
  std::string out = "declaration:" + py::str(name) +
                    "{description:" + in_quotes(py::str(py::getitem(fn, "description", fw)));
  const py::Ref params = py::getitem(fn, "parameters", fw);
  if (py::truthy(params)) {
    const std::string pw = fw + ".parameters";
    out += ",parameters:{";
    const py::Ref props = py::getitem(params, "properties", pw);
    if (py::truthy(props)) {
      if (!props->is_object())
        fail(pw + ".properties must be an object (got " + props->type_name() + ")");
      out += "properties:{";
      append_parameters(out, *props, false, 1, pw + ".properties");
      out += "},";
    }
    const py::Ref required = py::getitem(params, "required", pw);
    if (py::truthy(required)) {
      out += "required:[";
      append_quoted_items(out, required, pw + ".required");
      out += "],";
    }
    // Without a truthy `type` the template leaves `parameters:{` unclosed; so do we.
    const py::Ref type = py::getitem(params, "type", pw);
    if (py::truthy(type)) out += "type:" + in_quotes(py::upper(py::str(type))) + "}";
  }
  if (py::contains(*fn, "response", fw)) {
    const std::string rw = fw + ".response";
    const py::Ref response = py::getitem(fn, "response", fw);
    out += ",response:{";
    const py::Ref description = py::getitem(response, "description", rw);
    if (py::truthy(description)) out += "description:" + in_quotes(py::str(description)) + ",";
    // Like `parameters`, the block is closed only by a type, and only an OBJECT type is written.
    if (py::upper(py::str(py::getitem(response, "type", rw))) == "OBJECT")
      out += "type:" + in_quotes("OBJECT") + "}";
  }
  out += '}';
  return out;
}

std::string format_tool_response_block(const std::string& name, py::Ref response) {
  std::string out = "<|tool_response>response:" + name + "{";
  if (py::is_mapping(response)) {
    bool first = true;
    for (const auto& [key, value] : py::dictsort(*response)) {
      if (!first) out += ',';
      first = false;
      out += *key;
      out += ':';
      append_argument(out, *value, false, 1);
    }
  } else {
    out += "value:" + format_argument(response, false);
  }
  out += "}<tool_response|>";
  return out;
}

}  // namespace mlxq::text
