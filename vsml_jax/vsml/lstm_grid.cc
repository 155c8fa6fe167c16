// The dense VSML layer's LSTM tick as one CPU kernel (an XLA FFI custom call), used by
// vsml_jax.vsml.kernel (network.impl 'fused'; built on first use).
//
// The same function as vsml_jax.vsml.cell.lstm_update_grid: for every cell n = (b, a)
// of the [H, B, A] grid (H = 16),
//   z = W_h^T h[:, n] + rows[:, a] + cols[:, b] + bias          (4H gate pre-activations)
//   c' = sigmoid(z_f) c + sigmoid(z_i) tanh(z_g),   h' = sigmoid(z_o) tanh(c')
// XLA computes this as a matmul and three elementwise passes over [4H, B*A] arrays in
// memory; here each block of 16 cells keeps its 64 gates in registers, so h and c are
// read and written once per tick, in place. The gates: sigmoid(x) = 1 / (1 + 2^y),
// y = -x log2(e) clamped to [-126, 126], with 2^y from a degree-5 polynomial on the
// fraction (1.4e-7 relative error) and vscalefps, 1/d from vrcp14ps and one Newton
// step, and tanh(x) = 2 sigmoid(2x) - 1: about 2e-7 absolute error per gate, against
// XLA's 1e-7. With VSML_RATIONAL_TANH instead (for benchmarks/fused_tick.py): XLA's
// own arithmetic, sigmoid(x) = (1 + tanh(x/2)) / 2 and the rational tanh that XLA's CPU
// backend emits (a clamp at +-7.9053, degree 13/6).
//
// AVX-512 only: a portable build for AVX2 (16-lane vectors as pairs of 8, a division
// for the reciprocal) was several times slower than XLA's own tick (docs/BENCHMARKS.md).

#ifndef __AVX512F__
#error "the fused VSML kernel needs an AVX-512 CPU"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kLanes = 16;
constexpr int64_t kHidden = 16;  // the paper's; other sizes are rejected
typedef float vf __attribute__((vector_size(kLanes * sizeof(float))));

inline vf splat(float x) { return vf{} + x; }

#ifndef VSML_RATIONAL_TANH
inline vf sigmoid_v(vf z) {
  vf y = z * -1.4426950408889634f;  // 1 + e^-z = 1 + 2^y
  y = y > 126.0f ? splat(126.0f) : y;  // 2^y stays finite; NaN stays NaN
  y = y < -126.0f ? splat(-126.0f) : y;
  const vf n = (vf)_mm512_roundscale_ps((__m512)y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const vf f = y - n;  // in [-1/2, 1/2]
  vf p = splat(0.0013266970636323094f);
  p = p * f + 0.009675459936261177f;
  p = p * f + 0.05550742521882057f;
  p = p * f + 0.24022121727466583f;
  p = p * f + 0.6931469440460205f;
  p = p * f + 1.0000001192092896f;
  const vf d = 1.0f + (vf)_mm512_scalef_ps((__m512)p, (__m512)n);  // 1 + 2^n p
  const vf r = (vf)_mm512_rcp14_ps((__m512)d);
  return r * (2.0f - d * r);
}
inline vf tanh_v(vf x) { return 2.0f * sigmoid_v(2.0f * x) - 1.0f; }
#else
inline vf tanh_v(vf x) {
  const vf lim = splat(7.90531110763549805f);
  vf xc = x > lim ? lim : x;
  xc = xc < -lim ? -lim : xc;  // NaN stays NaN: both comparisons are false
  const vf x2 = xc * xc;
  vf p = splat(-2.76076847742355e-16f);
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  vf q = splat(1.19825839466702e-06f);
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  const vf r = xc * p / q;
  const vf ax = x < 0 ? -x : x;
  return ax < 0.0004f ? x : r;  // tanh(x) = x to float precision
}
inline vf sigmoid_v(vf z) { return 0.5f + 0.5f * tanh_v(z * 0.5f); }
#endif

// n <= 16 cells from p (the rest zero), and back
inline vf load(const float* p, int64_t n) {
  vf v{};
  std::memcpy(&v, p, n * sizeof(float));
  return v;
}
inline void store(float* p, vf v, int64_t n) { std::memcpy(p, &v, n * sizeof(float)); }

// One block of n cells at column a0 of row b; kFull: n == 16 (constant-size copies are
// plain vector loads and stores)
template <bool kFull>
inline void Block(const float* W, const float* hp, const float* cp, const float* R,
                  const float* cb, float* ho, float* co, int64_t N, int64_t A, int64_t a0,
                  int64_t off, int64_t n) {
  constexpr int64_t H = kHidden;
  auto ld = [n](const float* p) { return load(p, kFull ? kLanes : n); };
  auto st = [n](float* p, vf v) { store(p, v, kFull ? kLanes : n); };
  vf hv[H];
  for (int64_t k = 0; k < H; ++k) hv[k] = ld(hp + k * N + off);
  for (int64_t j = 0; j < H; ++j) {
    vf z[4];
    for (int64_t g = 0; g < 4; ++g) z[g] = ld(R + (g * H + j) * A + a0) + cb[g * H + j];
    // two partial sums per gate: 8 independent FMA chains keep both FMA pipes busy
    // (4 chains of 16 dependent FMAs would wait on the FMA latency half the time)
    vf y[4] = {};
#pragma GCC unroll 8
    for (int64_t k = 0; k < H; k += 2)
#pragma GCC unroll 4
      for (int64_t g = 0; g < 4; ++g) {
        z[g] += W[(g * H + j) * H + k] * hv[k];
        y[g] += W[(g * H + j) * H + k + 1] * hv[k + 1];
      }
    for (int64_t g = 0; g < 4; ++g) z[g] += y[g];
    // gate order (input, forget, cell, output)
    const vf cn = sigmoid_v(z[1]) * ld(cp + j * N + off) + sigmoid_v(z[0]) * tanh_v(z[2]);
    st(co + j * N + off, cn);
    st(ho + j * N + off, sigmoid_v(z[3]) * tanh_v(cn));
  }
}

ffi::Error LstmGridImpl(ffi::Buffer<ffi::F32> w_ht, ffi::Buffer<ffi::F32> h,
                        ffi::Buffer<ffi::F32> c, ffi::Buffer<ffi::F32> rows,
                        ffi::Buffer<ffi::F32> cols, ffi::Buffer<ffi::F32> bias,
                        ffi::ResultBuffer<ffi::F32> h_out, ffi::ResultBuffer<ffi::F32> c_out) {
  const auto hd = h.dimensions();
  const auto wd = w_ht.dimensions();
  const auto rd = rows.dimensions();
  const auto cd = cols.dimensions();
  constexpr int64_t H = kHidden, G = 4 * kHidden;
  if (hd.size() != 3 || hd[0] != H || wd.size() != 2 || wd[0] != G || wd[1] != H ||
      rd.size() != 2 || rd[0] != G || rd[1] != hd[2] || cd.size() != 2 || cd[0] != G ||
      cd[1] != hd[1] || bias.element_count() != static_cast<size_t>(G) ||
      c.element_count() != h.element_count())
    return ffi::Error::InvalidArgument(
        "expected w_ht [64, 16], h and c [16, B, A], rows [64, A], cols [64, B], bias [64]");
  // flush denormals to zero while the kernel runs, as XLA's own CPU code does (a gate
  // near 0 or 1 can underflow, and denormal arithmetic is up to 100x slower)
  const unsigned int csr = _mm_getcsr();
  _mm_setcsr(csr | 0x8040);  // FTZ | DAZ
  const int64_t B = hd[1], A = hd[2], N = B * A;
  const float* W = w_ht.typed_data();
  const float* C = cols.typed_data();
  const float* bp = bias.typed_data();
  float cb[G];
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t g = 0; g < G; ++g) cb[g] = C[g * B + b] + bp[g];
    int64_t a0 = 0;
    for (; a0 + kLanes <= A; a0 += kLanes)
      Block<true>(W, h.typed_data(), c.typed_data(), rows.typed_data(), cb,
                  h_out->typed_data(), c_out->typed_data(), N, A, a0, b * A + a0, kLanes);
    if (a0 < A)
      Block<false>(W, h.typed_data(), c.typed_data(), rows.typed_data(), cb,
                   h_out->typed_data(), c_out->typed_data(), N, A, a0, b * A + a0, A - a0);
  }
  _mm_setcsr(csr);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(VsmlLstmGrid, LstmGridImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w_ht [4H, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h [H, B, A]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // c [H, B, A]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // rows [4H, A]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // cols [4H, B]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // bias [4H]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // h' [H, B, A]
                                  .Ret<ffi::Buffer<ffi::F32>>());  // c' [H, B, A]
