// The op interface the forward pass is written against. It knows nothing of Gemma: matmul over
// a weight view, norms, RoPE, activations, softmax and attention over a position-indexed cache.
// All activations are f32 and all accumulation is f32. matmul_reference is the portable scalar
// reference for the SIMD matmul kernels of matmul.h; the other ops here are what the forward
// pass calls (gelu_gate and softcap have Highway versions in vector_ops.h).
#pragma once
#include <cstdint>

#include "core/thread_pool.h"
#include "kernels/matrix.h"

namespace mlxq::kernels {

// y[t, n] = sum_k x[t, k] * W[n, k] for t < T; x is [T, ldx], y is [T, ldy].
void matmul_reference(const Matrix& w, const float* x, int64_t T, int64_t ldx, float* y, int64_t ldy,
            ThreadPool& pool);

// y = x * (mean(x^2) + eps)^-1/2 * w over n values (w == nullptr: no weight). In place is fine.
void rms_norm(const float* x, const float* w, int64_t n, float eps, float* y);

// NEOX rotation of one head of dim d at position pos: dim i pairs with i + d/2 for
// i < d/2, by angle pos*inv_freq[i] (inv_freq has d/2 entries; 0 leaves the pair unchanged).
void rope_neox(float* x, int64_t d, const float* inv_freq, int64_t pos);

float gelu_tanh(float x);
// out[i] = gelu_tanh(gate[i]) * up[i]
void gelu_gate(const float* gate, const float* up, int64_t n, float* out);

void softmax(float* x, int64_t n);

// One query head q[d] against keys/values looked up by position: keys at positions
// [pos_begin, pos_end) are read from k_base + slot(pos)*k_stride (same for v), where
// slot(pos) = pos % ring. Writes out[d]. `scores` is scratch of pos_end - pos_begin floats.
void attend(const float* q, int64_t d, const float* k_base, const float* v_base, int64_t stride,
            int64_t ring, int64_t pos_begin, int64_t pos_end, float scale, float* scores,
            float* out);

}  // namespace mlxq::kernels
