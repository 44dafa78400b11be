// SHA-256 (FIPS 180-4), for pinning derived files and templates by content.
#pragma once
#include <string>
#include <string_view>

namespace mlxq {

std::string sha256_hex(std::string_view data);  // lowercase hex digest

}  // namespace mlxq
