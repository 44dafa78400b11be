// Element-wise and attention ops of the forward pass in SIMD (Highway, runtime dispatch). Each
// has a scalar reference in kernels.h that the tests compare against.
#pragma once
#include <cstdint>

namespace mlxq::kernels::simd {

// out[i] = gelu_tanh(gate[i]) * up[i]
void gelu_gate(const float* gate, const float* up, int64_t n, float* out);
// x[i] = cap * tanh(x[i] / cap)
void softcap(float* x, int64_t n, float cap);
// As kernels::attend (one query head against a position-indexed ring of keys/values).
void attend(const float* q, int64_t d, const float* k_base, const float* v_base, int64_t stride,
            int64_t ring, int64_t pos_begin, int64_t pos_end, float scale, float* scores,
            float* out);
// Qb queries x G query heads sharing one KV head: query i's head g is q + i*q_token + g*q_head,
// attends positions [begin[i], end[i]) and writes out + i*out_token + g*out_head, each exactly
// as attend computes it; every key/value row is read once for the block. scores holds
// Qb * G * max(end[i] - begin[i]) floats.
struct AttendBlock {
  const float* q = nullptr;
  int64_t q_token = 0, q_head = 0;     // query row strides (floats)
  int64_t queries = 0, heads = 0;      // Qb, G
  int64_t d = 0;                       // head dim
  const float* k = nullptr;            // keys and values of this KV head, slot s at + s * kv_stride
  const float* v = nullptr;
  int64_t kv_stride = 0, ring = 0;     // position p lives in slot p % ring
  const int64_t* begin = nullptr;      // [Qb] first position each query attends
  const int64_t* end = nullptr;        // [Qb] one past its last
  float scale = 1.0f;
  float* scores = nullptr;
  float* out = nullptr;
  int64_t out_token = 0, out_head = 0;
};
void attend_block(const AttendBlock& a);
// Dense attention of a block of nq queries against nk keys (the vision tower's, bidirectional),
// as outer-product tiles with no horizontal sums:
//   scores_kt:       s[i * lds + j] = scale * sum_c q[i * ldq + c] * kt[c * ldk + j] (K transposed)
//   weighted_values: out[i * ldo + c] = sum_j p[i * ldp + j] * v[j * ldv + c]
// weighted_values is fastest when d is a multiple of 2 vectors (32 floats covers every x86 target).
void scores_kt(const float* q, int64_t ldq, int64_t nq, const float* kt, int64_t ldk, int64_t nk, int64_t d,
               float scale, float* s, int64_t lds);
void weighted_values(const float* p, int64_t ldp, int64_t nq, const float* v, int64_t ldv, int64_t nk, int64_t d,
                     float* out, int64_t ldo);
// x = exp(x - max x) / sum, in place (as kernels::softmax).
void softmax(float* x, int64_t n);
// NEOX rotation with precomputed cos/sin of each pair's angle (d/2 entries each).
void rope_neox(float* x, int64_t d, const float* cos, const float* sin);
// y = x * (mean(x^2) + eps)^-1/2 * w (w may be null); in place is fine.
void rms_norm(const float* x, const float* w, int64_t n, float eps, float* y);
// Sum of n floats read with several independent vector accumulators (the bandwidth probe's loop).
float read_sum(const float* x, int64_t n);
// The Highway target these run on.
const char* target_name();

}  // namespace mlxq::kernels::simd
