// The dense VSML layer's LSTM tick as one CPU kernel (an XLA FFI custom call), used by
// vsml_jax.vsml.kernel (network.impl 'fused'; built on first use).
//
// The same function as vsml_jax.vsml.cell.lstm_update_grid: for every cell n = (b, a)
// of the [H, B, A] grid (H = 16),
//   z = W_h^T h[:, n] + rows[:, a] + cols[:, b] + bias          (4H gate pre-activations)
//   c' = sigmoid(z_f) c + sigmoid(z_i) tanh(z_g),   h' = sigmoid(z_o) tanh(c')
// XLA computes this as a matmul and three elementwise passes over [4H, B*A] arrays in
// memory; here each block of 16 cells keeps its 64 gates in registers, so h and c are
// read and written once per tick, in place.
//
// The kernel is bound by its vector instructions (both AVX-512 ports busy), so the gates
// are written for few of them. Every gate is e^-z = 2^y: the weights, rows, cols and bias
// are scaled by -log2(e) (by -2 log2(e) for z_g, whose tanh needs e^-2z) once per call,
// so the gate inputs arrive as y. 2^y = 2^floor(y) p(y - floor(y)), with y - floor(y)
// from vreduceps, a degree-5 polynomial p (1.6e-7 relative error in float32) and
// 2^floor(y) from vscalefps; y is clamped to <= 62 (y -> -inf gives 0, NaN stays NaN).
// Then sigmoid(z) = 1 / (1 + 2^y) and tanh(z) = (1 - 2^y) / (1 + 2^y), and the products
// sigmoid(z_i) tanh(z_g) and sigmoid(z_o) tanh(c') each take one reciprocal of the product
// of their denominators (below 2^126 with the clamp): vrcp14ps and one Newton step. Within
// 3e-7 of float64 in h' and 1e-6 in c' (|c| <= 5), where XLA's tick is within 5e-7 and
// 7e-7 (tests/vsml/test_kernel.py). With
// VSML_RATIONAL_TANH instead (for benchmarks/fused_tick.py): XLA's own arithmetic,
// sigmoid(x) = (1 + tanh(x/2)) / 2 and the rational tanh that XLA's CPU backend emits (a
// clamp at +-7.9053, degree 13/6), on unscaled inputs.
//
// AVX-512 (F and DQ) only: a portable build for AVX2 (16-lane vectors as pairs of 8, a
// division for the reciprocal) was several times slower than XLA's own tick
// (docs/BENCHMARKS.md).

#if !defined(__AVX512F__) || !defined(__AVX512DQ__)
#error "the fused VSML kernel needs an AVX-512 (F, DQ) CPU"
#endif

#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kLanes = 16;
constexpr int64_t kHidden = 16;  // the paper's; other sizes are rejected
typedef float vf __attribute__((vector_size(kLanes * sizeof(float))));

inline vf splat(float x) { return vf{} + x; }

#ifndef VSML_RATIONAL_TANH
// the scale of the sigmoid gates' and of the tanh gate's inputs: e^-z = 2^(kSig z),
// e^-2z = 2^(kTanh z)
constexpr float kSig = -1.4426950408889634f, kTanh = -2.8853900817779268f;

inline vf exp2_v(vf y) {
  y = (vf)_mm512_min_ps(_mm512_set1_ps(62.0f), (__m512)y);  // min(62, NaN) is NaN
  const vf f = (vf)_mm512_reduce_ps((__m512)y, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  vf p = splat(0.0018775727367028594f);  // 2^f on [0, 1), relative minimax
  p = p * f + 0.008989344350993633f;
  p = p * f + 0.05582631751894951f;
  p = p * f + 0.24015361070632935f;
  p = p * f + 0.6931530833244324f;
  p = p * f + 0.9999999403953552f;
  return (vf)_mm512_scalef_ps((__m512)p, (__m512)y);  // p 2^floor(y)
}
inline vf recip_v(vf d) {
  const vf r = (vf)_mm512_rcp14_ps((__m512)d);
  return r * (2.0f - d * r);
}
// the cell update from the scaled pre-activations y (gate order input, forget, cell,
// output)
inline void Update(vf yi, vf yf, vf yg, vf yo, vf c, vf* cn, vf* hn) {
  const vf ei = exp2_v(yi), ef = exp2_v(yf), eg = exp2_v(yg), eo = exp2_v(yo);
  // sigmoid(z_i) tanh(z_g) = (1 - e^-2g) / ((1 + e^-i) (1 + e^-2g))
  const vf ig = (1.0f - eg) * recip_v((1.0f + ei) * (1.0f + eg));
  const vf c2 = c * recip_v(1.0f + ef) + ig;
  const vf ec = exp2_v(c2 * kTanh);
  *cn = c2;
  *hn = (1.0f - ec) * recip_v((1.0f + eo) * (1.0f + ec));
}
#else
constexpr float kSig = 1.0f, kTanh = 1.0f;

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
inline void Update(vf zi, vf zf, vf zg, vf zo, vf c, vf* cn, vf* hn) {
  *cn = sigmoid_v(zf) * c + sigmoid_v(zi) * tanh_v(zg);
  *hn = sigmoid_v(zo) * tanh_v(*cn);
}
#endif

// the scale of gate row g of 4H
inline float Scale(int64_t g) { return g / kHidden == 2 ? kTanh : kSig; }

// n <= 16 cells from p (the rest zero), and back
inline vf load(const float* p, int64_t n) {
  vf v{};
  std::memcpy(&v, p, n * sizeof(float));
  return v;
}
inline void store(float* p, vf v, int64_t n) { std::memcpy(p, &v, n * sizeof(float)); }

// One block of n cells at column a0 of row b; kFull: n == 16 (constant-size copies are
// plain vector loads and stores). W, R and cb are scaled by Scale(g).
template <bool kFull>
inline void Block(const float* W, const float* hp, const float* cp, const float* R,
                  const float* cb, float* ho, float* co, int64_t N, int64_t A, int64_t a0,
                  int64_t off, int64_t n) {
  constexpr int64_t H = kHidden;
  auto ld = [n](const float* p) { return load(p, kFull ? kLanes : n); };
  auto st = [n](float* p, vf v) { store(p, v, kFull ? kLanes : n); };
  vf hv[H];
  for (int64_t k = 0; k < H; ++k) hv[k] = ld(hp + k * N + off);
  for (int64_t j = 0; j < H; j += 2) {
    // two hidden units at a time: 8 independent FMA chains keep both FMA pipes busy
    vf z[8];
    for (int64_t u = 0; u < 2; ++u)
      for (int64_t g = 0; g < 4; ++g)
        z[4 * u + g] = ld(R + (g * H + j + u) * A + a0) + cb[g * H + j + u];
#pragma GCC unroll 16
    for (int64_t k = 0; k < H; ++k)
#pragma GCC unroll 8
      for (int64_t q = 0; q < 8; ++q)
        z[q] += W[((q % 4) * H + j + q / 4) * H + k] * hv[k];
    for (int64_t u = 0; u < 2; ++u) {
      vf cn, hn;
      const vf c = ld(cp + (j + u) * N + off);
      Update(z[4 * u], z[4 * u + 1], z[4 * u + 2], z[4 * u + 3], c, &cn, &hn);
      st(co + (j + u) * N + off, cn);
      st(ho + (j + u) * N + off, hn);
    }
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
  // the gate inputs' scales, applied once per call (W and rows are small next to the grid)
  const float* C = cols.typed_data();
  const float* bp = bias.typed_data();
  const float* w = w_ht.typed_data();
  const float* r = rows.typed_data();
  alignas(64) float W[G * H];
  for (int64_t g = 0; g < G; ++g)
    for (int64_t k = 0; k < H; ++k) W[g * H + k] = w[g * H + k] * Scale(g);
  thread_local std::vector<float> rs;
  rs.resize(G * A);
  float* R = rs.data();
  for (int64_t g = 0; g < G; ++g)
    for (int64_t a = 0; a < A; ++a) R[g * A + a] = r[g * A + a] * Scale(g);
  float cb[G];
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t g = 0; g < G; ++g) cb[g] = (C[g * B + b] + bp[g]) * Scale(g);
    int64_t a0 = 0;
    for (; a0 + kLanes <= A; a0 += kLanes)
      Block<true>(W, h.typed_data(), c.typed_data(), R, cb, h_out->typed_data(),
                  c_out->typed_data(), N, A, a0, b * A + a0, kLanes);
    if (a0 < A)
      Block<false>(W, h.typed_data(), c.typed_data(), R, cb, h_out->typed_data(),
                   c_out->typed_data(), N, A, a0, b * A + a0, A - a0);
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
