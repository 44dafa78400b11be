// matmul: picks a kernel per task (matmul_internal.h), splits all tasks' rows over the pool by cost
// (weight bytes plus arithmetic), and quantizes activations for the int8 kernel.
#include "kernels/matmul.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include <hwy/targets.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

#include "core/error.h"
#include "kernels/matmul_internal.h"

namespace mlxq::kernels {

namespace {

bool cpu_has_q8_isa() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
         __builtin_cpu_supports("avx512vbmi");
#else
  return false;
#endif
}

bool cpu_has_avx2_isa() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpu_has_bf16_isa() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return cpu_has_q8_isa() && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

// AMX: CPUID leaf 7 EDX bit 24 (AMX-TILE) and bit `unit` (25 AMX-INT8, 22 AMX-BF16), and
// Linux's permission to use tile data.
bool cpu_has_amx(int unit) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return (d >> 24 & 1) && (d >> unit & 1) && q8::amx_permission();
#else
  (void)unit;
  return false;
#endif
}
bool cpu_has_amx_isa() { return cpu_has_q8_isa() && cpu_has_amx(25); }
bool cpu_has_amx_bf16_isa() { return cpu_has_bf16_isa() && cpu_has_amx(22); }

std::atomic<bool> g_q8_enabled{true};
std::atomic<bool> g_amx_enabled{true};
std::atomic<bool> g_avx512_enabled{true};

bool avx512_on() {
  return g_q8_enabled.load(std::memory_order_relaxed) && g_avx512_enabled.load(std::memory_order_relaxed);
}

// Whether activations should get their int8 form at all.
bool int8_activations() {
  return g_q8_enabled.load(std::memory_order_relaxed) &&
         ((q8_kernel_supported() && avx512_on()) || q8_avx2_kernel_supported());
}

// Cost of one row of a task in "bytes": what it streams plus its arithmetic, roughly weighted
// (int8 and bf16 kernels at half the f32 kernel's cost per multiply-add).
int64_t row_cost(const MatmulTask& t, const KernelChoice& c) {
  const Matrix& w = *t.w;
  const int64_t bytes = int64_t(w.row_bytes + (w.quantized ? 2 * w.sb_row_bytes : 0));
  const int64_t macs = t.x.T * w.cols;
  return bytes + (c.narrow_arithmetic() ? macs / 4 : macs / 2) + 64;
}

constexpr int kPartsPerThread = 8;
constexpr int64_t kAmxMinTokens = 4;

// Where part i of n starts in a cost range of `total`: total * (1 - (1 - i/n)^2). Parts shrink
// towards the end (the first is 2/n of the range, the last 1/n^2), so the thread that takes the
// last part keeps the other waiting for less.
int64_t part_start(int64_t total, int64_t n, int64_t i) {
  const int64_t left = n - i;
  return total - int64_t(double(total) * double(left * left) / double(n * n));
}

// Rows of a task that lie before cost c, rounded to a multiple of `align` (the chosen kernel's
// KernelChoice::row_align).
int64_t rows_before(int64_t c, int64_t start, int64_t unit, int64_t rows, int64_t align) {
  if (c <= start) return 0;
  if (c >= start + unit * rows) return rows;
  int64_t r = (c - start) / unit;
  r = (r + align / 2) / align * align;
  return std::min(r, rows);
}

bool amx_bf16_on() {
  static const bool ok = cpu_has_amx_bf16_isa();
  return ok && g_amx_enabled.load(std::memory_order_relaxed) && avx512_on();
}

}  // namespace

bool amx_kernel_supported() {
  static const bool ok = cpu_has_amx_isa();
  return ok;
}
void set_amx_kernel_enabled(bool on) { g_amx_enabled.store(on); }

bool q8_kernel_supported() {
  static const bool ok = cpu_has_q8_isa();
  return ok;
}
bool bf16_kernel_supported() {
  static const bool ok = cpu_has_bf16_isa();
  return ok;
}
bool q8_avx2_kernel_supported() {
  static const bool ok = cpu_has_avx2_isa();
  return ok;
}
void set_q8_kernel_enabled(bool on) { g_q8_enabled.store(on); }
void set_avx512_kernels_enabled(bool on) { g_avx512_enabled.store(on); }
bool il16_kernel_active() { return q8_kernel_supported() && avx512_on(); }
void emulate_avx2_cpu() {
  check(q8_avx2_kernel_supported() && (hwy::SupportedTargets() & HWY_AVX2) != 0,
        "MLXQ_CPU=avx2: this CPU (or build) has no AVX2 + FMA");
  hwy::SetSupportedTargetsForTest(HWY_AVX2);
  set_avx512_kernels_enabled(false);
}

void throw_unknown_bits(int bits, const char* kernel, std::initializer_list<int> known) {
  std::string list;
  for (int b : known) list += (list.empty() ? "" : ", ") + std::to_string(b);
  throw Error(std::string("the ") + kernel + " kernel has no form for " + std::to_string(bits) +
              "-bit codes (it takes " + list + " bits)");
}

KernelChoice choose_kernel(const Matrix& w, const Activations& x, Precision p) {
  constexpr KernelChoice f32{KernelId::F32Hwy, 4};
  if (p == Precision::Exact) return f32;
  if (w.quantized) {
    // The int8 kernels: the int8 form of x, blocks of 64 that a scale group covers whole, rows
    // no longer than their block buffers.
    const int gs = w.spec.group_size;
    if (x.q == nullptr || !g_q8_enabled.load(std::memory_order_relaxed) || (gs != 64 && gs != 128) ||
        w.cols % 64 != 0 || w.cols > 64 * q8::kMaxBlocks)
      return f32;
    if (q8_kernel_supported() && avx512_on()) {
      // Only the AVX-512 kernels read the interleaved copy (group 64, whole groups of 16 rows);
      // AMX tiles pay off from kAmxMinTokens tokens (one tile holds 16; at 4-15 it still beats
      // the AVX-512 kernel, docs/benchmarks.md).
      if (w.il == nullptr || gs != 64 || w.rows % 16 != 0) return {KernelId::Q8Avx512, 4};
      if (x.T >= kAmxMinTokens && amx_kernel_supported() && g_amx_enabled.load(std::memory_order_relaxed))
        return {KernelId::Il16Amx, 16};
      return {KernelId::Il16Avx512, 16};
    }
    if (q8_avx2_kernel_supported() && w.spec.bits <= 6) return {KernelId::Q8Avx2, 4};
    return f32;
  }
  // Dense bf16 weights with the bf16 form of x; AMX tiles need x's tiled form and whole row
  // groups.
  if (x.xb == nullptr || w.dtype != DType::BF16 || !bf16_kernel_supported() || !avx512_on()) return f32;
  if (x.xbt != nullptr && w.rows % 16 == 0 && amx_bf16_on()) return {KernelId::Bf16Amx, 16};
  return {KernelId::Bf16Avx512, 4};
}

std::string kernel_id_name(KernelId id) {
  switch (id) {
    case KernelId::Q8Avx512: return "q8-avx512";
    case KernelId::Il16Avx512: return "il16-avx512";
    case KernelId::Il16Amx: return "il16-amx";
    case KernelId::Q8Avx2: return "q8-avx2";
    case KernelId::Bf16Amx: return "bf16-amx";
    case KernelId::Bf16Avx512: return "bf16-avx512";
    case KernelId::F32Hwy: break;
  }
  return std::string("f32-hwy:") + hwy_kernels::target_name();
}

std::string kernel_name(const Matrix& w, Precision p) {
  // Activations of one token (decode) in the forms Fast and Int8 make: int8 and bf16, no AMX
  // tiles. The pointers are only tested for null.
  Activations probe;
  probe.T = 1;
  probe.q = reinterpret_cast<const int8_t*>(&probe);
  probe.xb = reinterpret_cast<const uint16_t*>(&probe);
  return kernel_id_name(choose_kernel(w, probe, p).id);
}

void quantize_row_q8(const float* x, int64_t K, int8_t* q, float* d, float* s, int8_t* q2) {
  if (q8_kernel_supported() && g_avx512_enabled.load(std::memory_order_relaxed))
    return q8::quantize_row_avx512(x, K, q, d, s, q2);
  quantize_row_q8_scalar(x, K, q, d, s, q2);
}

void quantize_row_q8_scalar(const float* x, int64_t K, int8_t* q, float* d, float* s, int8_t* q2) {
  for (int64_t b = 0; b < K / 64; ++b) {
    const float* xb = x + 64 * b;
    float amax = 0;
    for (int i = 0; i < 64; ++i) amax = std::max(amax, std::fabs(xb[i]));
    const float db = amax / 127.0f;
    const float id = db > 0 ? 1.0f / db : 0.0f;
    int32_t sum = 0;
    const bool paired = b < K / 128 * 2;
    const int64_t base = paired ? 128 * (b / 2) + 4 * (b % 2) : 64 * b;
    for (int i = 0; i < 64; ++i) {
      const int64_t at = base + (paired ? 64 * (i / 32) + 8 * (i % 32 / 4) + i % 4 : i);
      const float v = xb[i] * id;
      const int8_t c = int8_t(std::nearbyint(v));
      q[at] = c;
      if (q2) {
        const int8_t c2 = int8_t(std::min(127.0f, std::nearbyint((v - float(c)) * float(1 << kQ8Shift))));
        q2[at] = c2;
        sum += (c << kQ8Shift) + c2;
      } else {
        sum += c;
      }
    }
    d[b] = q2 ? db * (1.0f / float(1 << kQ8Shift)) : db;
    s[b] = d[b] * float(sum);
  }
}

void ActivationBuffer::reserve(int64_t max_rows, int64_t max_k) {
  q_.resize(size_t(max_rows * max_k));
  q2_.resize(q_.size());
  xb_.resize(q_.size());
  xb2_.resize(q_.size());
  static const bool amx_bf16 = cpu_has_amx_bf16_isa();  // the tiled copy only where it is used
  if (amx_bf16) {
    xbt_.resize(size_t((max_rows + 15) / 16 * 16 * max_k));
    xbt2_.resize(xbt_.size());
  }
  d_.resize(size_t(max_rows * (max_k / 64 + 1)));
  s_.resize(d_.size());
}

Activations ActivationBuffer::prepare(const float* x, int64_t T, int64_t K, int64_t ldx,
                                      Precision p, std::initializer_list<const Matrix*> consumers) {
  Activations a;
  a.T = T;
  a.K = K;
  a.x = x;
  a.ldx = ldx;
  if (p == Precision::Exact) return a;
  const bool split = p == Precision::Fast;
  bool want_q8 = consumers.size() == 0, want_bf16 = consumers.size() == 0;
  for (const Matrix* m : consumers) {
    want_q8 = want_q8 || m->quantized;
    want_bf16 = want_bf16 || (!m->quantized && m->dtype == DType::BF16);
  }
  if (want_bf16 && bf16_kernel_supported()) {
    check(size_t(T * K) <= xb_.size(), "activation buffer too small for " + std::to_string(T) + "x" + std::to_string(K));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < K; ++i) {
        const float v = x[t * ldx + i];
        const uint16_t hi = f32_to_bf16(v);
        xb_[size_t(t * K + i)] = hi;
        if (split) xb2_[size_t(t * K + i)] = f32_to_bf16(v - bf16_to_f32(hi));
      }
    a.xb = xb_.data();
    if (split) a.xb2 = xb2_.data();
    if (T >= 16 && K % 32 == 0 && size_t((T + 15) / 16 * 16 * K) <= xbt_.size() && amx_bf16_on()) {
      const int64_t nu = (T + 15) / 16, nk = K / 32;
      for (int64_t u = 0; u < nu; ++u)
        for (int64_t c = 0; c < nk; ++c)
          for (int64_t pr = 0; pr < 16; ++pr)
            for (int64_t n = 0; n < 16; ++n)
              for (int64_t j = 0; j < 2; ++j) {
                const int64_t t = 16 * u + n, k = 32 * c + 2 * pr + j;
                const size_t at = size_t((((u * nk + c) * 16 + pr) * 16 + n) * 2 + j);
                xbt_[at] = t < T ? xb_[size_t(t * K + k)] : 0;
                if (split) xbt2_[at] = t < T ? xb2_[size_t(t * K + k)] : 0;
              }
      a.xbt = xbt_.data();
      if (split) a.xbt2 = xbt2_.data();
    }
  }
  if (!want_q8 || K % 64 != 0 || !int8_activations()) return a;
  check(size_t(T * K) <= q_.size(), "activation buffer too small for " + std::to_string(T) + "x" +
                                        std::to_string(K));
  const int64_t nb = K / 64;
  for (int64_t t = 0; t < T; ++t)
    quantize_row_q8(x + t * ldx, K, &q_[size_t(t * K)], &d_[size_t(t * nb)], &s_[size_t(t * nb)],
                    split ? &q2_[size_t(t * K)] : nullptr);
  static std::atomic<uint64_t> generations{0};
  a.generation = generations.fetch_add(1, std::memory_order_relaxed) + 1;
  a.q = q_.data();
  if (split) a.q2 = q2_.data();
  a.d = d_.data();
  a.s = s_.data();
  return a;
}

void run_rows(const KernelChoice& c, const MatmulTask& t, int64_t r0, int64_t r1) {
  if (r0 >= r1 || t.x.T == 0) return;
  const Matrix& w = *t.w;
  switch (c.id) {
    case KernelId::Q8Avx512: return q8::matmul_rows_avx512(w, t.x, r0, r1, t.y, t.ldy);
    case KernelId::Il16Avx512: return q8::matmul_rows_il16_avx512(w, t.x, r0, r1, t.y, t.ldy);
    case KernelId::Il16Amx: return q8::matmul_rows_il16_amx(w, t.x, r0, r1, t.y, t.ldy);
    case KernelId::Q8Avx2: return q8::matmul_rows_avx2(w, t.x, r0, r1, t.y, t.ldy);
    case KernelId::Bf16Amx:
      if (r0 % 16 == 0 && r1 % 16 == 0) return q8::matmul_rows_bf16_amx(w, t.x, r0, r1, t.y, t.ldy);
      return q8::matmul_rows_bf16_avx512(w, t.x, r0, r1, t.y, t.ldy);  // not whole row groups
    case KernelId::Bf16Avx512: return q8::matmul_rows_bf16_avx512(w, t.x, r0, r1, t.y, t.ldy);
    case KernelId::F32Hwy: return hwy_kernels::matmul_rows_f32(w, t.x, r0, r1, t.y, t.ldy);
  }
}

void matmul_rows(const MatmulTask& t, int64_t r0, int64_t r1, Precision p) {
  if (r0 >= r1 || t.x.T == 0) return;
  run_rows(choose_kernel(*t.w, t.x, p), t, r0, r1);
}

void matmul(std::span<const MatmulTask> tasks, Precision p, ThreadPool& pool) {
  thread_local std::vector<int64_t> start, unit;  // grows to the largest task list once
  thread_local std::vector<KernelChoice> choice;
  const size_t n = tasks.size();
  if (start.size() < n + 1) {
    start.resize(n + 1);
    unit.resize(n + 1);
    choice.resize(n + 1);
  }
  int64_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    const MatmulTask& t = tasks[i];
    check(t.x.K == t.w->cols, "matmul: activations have " + std::to_string(t.x.K) +
                                  " columns, weight " + (t.w->name ? *t.w->name : std::string("?")) +
                                  " has " + std::to_string(t.w->cols));
    // One choice per task for this call: the cost, the part alignment and the kernel that runs
    // the parts all come from it.
    choice[i] = choose_kernel(*t.w, t.x, p);
    start[i] = total;
    unit[i] = row_cost(t, choice[i]);
    total += unit[i] * t.w->rows;
  }
  // The cost range is cut into several parts per thread, taken in order from a shared counter:
  // a thread slowed by the memory system takes fewer parts instead of holding the others up.
  int64_t total_rows = 0;
  for (size_t i = 0; i < n; ++i) total_rows += tasks[i].w->rows;
  const int parts = int(std::clamp<int64_t>(total_rows / 16, 1, int64_t(pool.size()) * kPartsPerThread));
  const int64_t* st = start.data();  // thread_local: the workers must see this thread's copy
  const int64_t* un = unit.data();
  const KernelChoice* ch = choice.data();
  std::atomic<int> next{0};
  pool.parallel_for(size_t(pool.size()), [&](size_t, size_t, int) {
    for (int part = next.fetch_add(1, std::memory_order_relaxed); part < parts;
         part = next.fetch_add(1, std::memory_order_relaxed)) {
      const int64_t c0 = part_start(total, parts, part), c1 = part_start(total, parts, part + 1);
      for (size_t i = 0; i < n; ++i) {
        const int64_t rows = tasks[i].w->rows;
        if (st[i] >= c1) break;
        if (st[i] + un[i] * rows <= c0) continue;
        const int64_t align = ch[i].row_align;
        run_rows(ch[i], tasks[i], rows_before(c0, st[i], un[i], rows, align),
                 rows_before(c1, st[i], un[i], rows, align));
      }
    }
  });
}

void matmul(const Matrix& w, const float* x, int64_t T, int64_t ldx, float* y, int64_t ldy,
            ThreadPool& pool, Precision p) {
  MatmulTask t;
  t.w = &w;
  t.x.T = T;
  t.x.K = w.cols;
  t.x.x = x;
  t.x.ldx = ldx;
  t.y = y;
  t.ldy = ldy;
  if (p != Precision::Exact && (int8_activations() || bf16_kernel_supported())) {
    thread_local ActivationBuffer buf;
    buf.reserve(T, w.cols);
    t.x = buf.prepare(x, T, w.cols, ldx, p, {&w});
  }
  matmul(std::span<const MatmulTask>(&t, 1), p, pool);
}

}  // namespace mlxq::kernels
