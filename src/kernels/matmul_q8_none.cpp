// Non-x86 builds: the int8 kernels do not exist (q8_kernel_supported() is false there, so these
// are never called).
#include "core/error.h"
#include "kernels/matmul_internal.h"

namespace mlxq::kernels::q8 {
void matmul_rows_avx512(const Matrix&, const Activations&, int64_t, int64_t, float*, int64_t) {
  throw Error("the AVX-512 int8 kernel is not built for this architecture");
}
void matmul_rows_avx2(const Matrix&, const Activations&, int64_t, int64_t, float*, int64_t) {
  throw Error("the AVX2 int8 kernel is not built for this architecture");
}
void quantize_row_avx512(const float*, int64_t, int8_t*, float*, float*, int8_t*) {
  throw Error("the AVX-512 int8 kernel is not built for this architecture");
}
void matmul_rows_bf16_avx512(const Matrix&, const Activations&, int64_t, int64_t, float*, int64_t) {
  throw Error("the AVX-512 bf16 kernel is not built for this architecture");
}
void matmul_rows_il16_avx512(const Matrix&, const Activations&, int64_t, int64_t, float*, int64_t) {
  throw Error("the AVX-512 int8 kernel is not built for this architecture");
}
void matmul_rows_il16_amx(const Matrix&, const Activations&, int64_t, int64_t, float*, int64_t) {
  throw Error("the AMX int8 kernel is not built for this architecture");
}
void matmul_rows_bf16_amx(const Matrix&, const Activations&, int64_t, int64_t, float*, int64_t) {
  throw Error("the AMX bf16 kernel is not built for this architecture");
}
bool amx_permission() { return false; }
}  // namespace mlxq::kernels::q8
