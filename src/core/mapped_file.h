// MappedFile: a read-only memory map of a whole file. Weights are used in place from the map,
// never copied. Movable, not copyable; the mapping lives as long as the object.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace mlxq {

class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);  // throws Error naming the path
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void release();
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Drops the pages of [p, p + n) that lie wholly inside the range from this process's resident set
// (MADV_DONTNEED on a read-only file mapping: the data stays in the page cache and a later access
// faults it back in). Streaming readers call it once a tensor is done, so resident memory stays
// near one tensor, not the whole input.
void release_pages(const void* p, size_t n);

}  // namespace mlxq
