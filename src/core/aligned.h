// A std::allocator that hands out cache-line-aligned (64-byte) storage, for buffers the SIMD
// kernels read with 512-bit loads: glibc's malloc returns 16-byte-aligned blocks (large ones sit
// 16 bytes past a page boundary), so every 64-byte load from them would straddle two cache lines.
#pragma once
#include <cstddef>
#include <new>
#include <vector>

namespace mlxq {

template <class T>
struct CacheAligned {
  using value_type = T;
  static constexpr std::align_val_t kAlign{64};
  CacheAligned() = default;
  template <class U>
  CacheAligned(const CacheAligned<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, kAlign); }
  template <class U>
  bool operator==(const CacheAligned<U>&) const noexcept { return true; }
};

// A vector whose data() is 64-byte aligned.
template <class T>
using AlignedVector = std::vector<T, CacheAligned<T>>;

}  // namespace mlxq
