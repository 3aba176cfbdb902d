// gemm_amx.cpp — float GEMM on AMX tiles through exact bfloat16 plane splits (see gemm_amx.h).
//
// Per thread, on its rectangle of C (gemm.cpp's parallel driver hands them out):
//   for jc (NC columns)    for pc (KC of k)    pack B block: 32-column panels, VNNI pairs, P planes
//    for ic (32 rows)      pack the A sliver: 32 rows x kc, P planes   (stays in L1)
//     for jr (32 cols)     4 accumulator tiles (32 x 32 of C) += A planes x B planes
// Packing splits each float into its planes once; the tiles then only load and multiply.
#include "kiln/runtime/gemm_amx.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BW__)
#define KILN_GEMM_AMX 1
#include <immintrin.h>

#include "kiln/runtime/kiln_runtime.h"

#pragma GCC visibility push(hidden)
#include "kiln/runtime/gemm_pack.h"
#pragma GCC visibility pop
// GCC 12 reports the undefined pass-through operand inside its own masked-load intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace kiln_rt::gemm::amx {

#if defined(KILN_GEMM_AMX)
namespace {

// A tile is 16 rows of 64 bytes: 16 x 32 bfloat16 of A (row i, k), or 16 k-pairs x 16 columns of B
// (VNNI: B(2r, n) and B(2r+1, n) side by side). Packed operands are sequences of such tiles, tile t
// of a block at base + t * kTile, where t = (kstep * P + plane) * 2 + half (half: rows 16-31 of A,
// columns 16-31 of B).
constexpr int64_t kTile = 512;  // uint16 per tile
constexpr int64_t kTileBytes = 64;

// k per packed block: the A sliver (32 rows x KC x P planes x 2 bytes) fills about 3/4 of L1.
template <int P>
constexpr int64_t kKc = P == 3   ? 192
                        : P == 2 ? 288
                                 : 576;
constexpr int64_t kNc = 512;  // columns per packed B block (P = 3, KC = 192: 576 KiB, in L2)

// Biased exponents outside [kMinExponent, kMaxExponent] are refused: below, a nonzero float's lowest
// plane would be subnormal (inexact, and AMX flushes it); above, rounding a plane could overflow.
// Infinities and NaNs (255) are above.
constexpr int kMinExponent = 24, kMaxExponent = 253;

struct alignas(64) TileConfig {
  uint8_t palette_id, start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Tiles 0-3: accumulators (C rows 0-15/16-31 x columns 0-15/16-31); 4-5: A halves; 6-7: B halves.
// All eight are 16 x 64 bytes. A constant in memory: GCC does not see LDTILECFG read its operand
// and drops stores into a local configuration as dead.
constexpr TileConfig kTileConfig = {1, 0, {}, {64, 64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16, 16}};

void configure_tiles() { _tile_loadconfig(&kTileConfig); }

// Splits 16 floats into P planes, plane i of each float in the low 16 bits of its lane. Lanes the
// split cannot represent exactly are flagged in `bad`.
template <int P>
__attribute__((always_inline)) inline void split(__m512 v, __m512i q[P], __mmask16& bad) {
  const __m512i x = _mm512_castps_si512(v);
  const __m512i e = _mm512_and_si512(_mm512_srli_epi32(x, 23), _mm512_set1_epi32(0xFF));
  const __m512i mag = _mm512_and_si512(x, _mm512_set1_epi32(0x7FFFFFFF));
  bad |= _mm512_cmpgt_epi32_mask(e, _mm512_set1_epi32(kMaxExponent)) |
         _mm512_mask_cmplt_epi32_mask(_mm512_test_epi32_mask(mag, mag), e, _mm512_set1_epi32(kMinExponent));
  const __m512i top = _mm512_set1_epi32(int32_t(0xFFFF0000u));
  // Round to nearest even, as a bfloat16 bit pattern in the high half (finite, not near overflow).
  auto rounded = [&](__m512i y) {
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(y, 16), _mm512_set1_epi32(1));
    return _mm512_and_si512(_mm512_add_epi32(y, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb)), top);
  };
  if constexpr (P == 3) {
    // Truncation: x - x0 and x - x0 - x1 are then exact, and the last remainder has at most 8
    // significant bits, so the three planes sum to x exactly.
    q[0] = _mm512_srli_epi32(x, 16);
    const __m512 r1 = _mm512_sub_ps(v, _mm512_castsi512_ps(_mm512_and_si512(x, top)));
    const __m512i x1 = _mm512_castps_si512(r1);
    q[1] = _mm512_srli_epi32(x1, 16);
    const __m512 r2 = _mm512_sub_ps(r1, _mm512_castsi512_ps(_mm512_and_si512(x1, top)));
    q[2] = _mm512_srli_epi32(_mm512_castps_si512(r2), 16);
  } else {
    // Fewer planes than bits: each rounds to nearest, halving what is left out (x - x0 is still
    // exact in float).
    const __m512i h0 = rounded(x);
    q[0] = _mm512_srli_epi32(h0, 16);
    if constexpr (P == 2) {
      const __m512 r1 = _mm512_sub_ps(v, _mm512_castsi512_ps(h0));
      q[1] = _mm512_srli_epi32(rounded(_mm512_castps_si512(r1)), 16);
    }
  }
}

// From a staged 32 (k) x 32 float block (k-major), the 16 words of k-pair r for lanes 16h..16h+15:
// per plane, the bfloat16 of k = 2r in the low half and of k = 2r + 1 in the high half.
template <int P>
__attribute__((always_inline)) inline void pair_words(const float* stage, int r, int h, __m512i w[P], __mmask16& bad) {
  __m512i qe[P], qo[P];
  split<P>(_mm512_load_ps(stage + (2 * r) * 32 + 16 * h), qe, bad);
  split<P>(_mm512_load_ps(stage + (2 * r + 1) * 32 + 16 * h), qo, bad);
  for (int pl = 0; pl < P; ++pl) w[pl] = _mm512_or_si512(qe[pl], _mm512_slli_epi32(qo[pl], 16));
}

// The A sliver: rows [0, rows) of A (row stride rs, column stride cs) over kc steps of k, zero-padded
// to 32 rows and whole k-steps.
template <int P>
void pack_a(const float* a, int64_t rs, int64_t cs, int rows, int64_t kc, uint16_t* __restrict dst, __mmask16& bad) {
  const int64_t ksteps = ceil_div(kc, 32);
  if (cs == 1) {  // row-major: each row's 32 k of a step are one tile row
    for (int i = 0; i < 32; ++i) {
      uint16_t* row_dst = dst + (i / 16) * kTile + (i % 16) * 32;
      for (int64_t ks = 0; ks < ksteps; ++ks) {
        uint16_t* d = row_dst + ks * P * 2 * kTile;
        if (i >= rows) {
          for (int pl = 0; pl < P; ++pl) std::memset(d + pl * 2 * kTile, 0, kTileBytes);
          continue;
        }
        const float* s = a + i * rs + ks * 32;
        const int64_t kn = kc - ks * 32;
        __m512i q0[P], q1[P];
        split<P>(_mm512_maskz_loadu_ps(simd::mask16(kn), s), q0, bad);
        split<P>(_mm512_maskz_loadu_ps(simd::mask16(kn - 16), s + 16), q1, bad);
        for (int pl = 0; pl < P; ++pl) {
          const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(q0[pl])),
                                                  _mm512_cvtepi32_epi16(q1[pl]), 1);
          _mm512_storeu_si512(d + pl * 2 * kTile, both);
        }
      }
    }
    return;
  }
  // Any other layout: stage 32 k x 32 rows as floats (k-major), pair up k, transpose to rows.
  alignas(64) float stage[32 * 32];
  alignas(64) uint32_t words[P][16][16];
  for (int64_t ks = 0; ks < ksteps; ++ks) {
    const int64_t kn = kc - ks * 32 < 32 ? kc - ks * 32 : 32;
    pack_sliver_vec<float, 32>(a + ks * 32 * cs, rs, cs, rows, kn, stage);
    std::memset(stage + kn * 32, 0, sizeof(float) * 32 * (32 - kn));
    for (int h = 0; h < 2; ++h) {
      for (int r = 0; r < 16; ++r) {
        __m512i w[P];
        pair_words<P>(stage, r, h, w, bad);
        for (int pl = 0; pl < P; ++pl) _mm512_store_si512(words[pl][r], w[pl]);
      }
      for (int pl = 0; pl < P; ++pl) {
        simd::Vec<float>::V t[16];
        for (int r = 0; r < 16; ++r) t[r] = (simd::Vec<float>::V)_mm512_castsi512_ps(_mm512_load_si512(words[pl][r]));
        simd::Vec<float>::transpose(t);  // t[i] = row i of the tile: its 16 k-pairs
        uint16_t* d = dst + ((ks * P + pl) * 2 + h) * kTile;
        for (int i = 0; i < 16; ++i) _mm512_storeu_ps(d + i * 32, (__m512)t[i]);
      }
    }
  }
}

// One 32-column panel of B: columns [0, cols) (column stride cs, row stride rs) over kc steps of k,
// zero-padded, as VNNI pairs.
template <int P>
void pack_b(const float* b, int64_t rs, int64_t cs, int cols, int64_t kc, uint16_t* __restrict dst, __mmask16& bad) {
  const int64_t ksteps = ceil_div(kc, 32);
  alignas(64) float stage[32 * 32];  // [k][column]
  for (int64_t ks = 0; ks < ksteps; ++ks) {
    const int64_t kn = kc - ks * 32 < 32 ? kc - ks * 32 : 32;
    pack_sliver_vec<float, 32>(b + ks * 32 * rs, cs, rs, cols, kn, stage);
    std::memset(stage + kn * 32, 0, sizeof(float) * 32 * (32 - kn));
    for (int h = 0; h < 2; ++h)
      for (int r = 0; r < 16; ++r) {
        __m512i w[P];
        pair_words<P>(stage, r, h, w, bad);
        for (int pl = 0; pl < P; ++pl) _mm512_store_si512(dst + ((ks * P + pl) * 2 + h) * kTile + r * 32, w[pl]);
      }
  }
}

#define KILN_LOAD_A(pl)                              \
  _tile_loadd(4, ak + (pl) * 2 * kTile, kTileBytes); \
  _tile_loadd(5, ak + (pl) * 2 * kTile + kTile, kTileBytes)
#define KILN_LOAD_B(pl)                              \
  _tile_loadd(6, bk + (pl) * 2 * kTile, kTileBytes); \
  _tile_loadd(7, bk + (pl) * 2 * kTile + kTile, kTileBytes)
#define KILN_DP4           \
  _tile_dpbf16ps(0, 4, 6); \
  _tile_dpbf16ps(1, 4, 7); \
  _tile_dpbf16ps(2, 5, 6); \
  _tile_dpbf16ps(3, 5, 7)

// Accumulator tiles += the packed A sliver x the packed B panel over ksteps of 32. The plane
// products are ordered so that consecutive ones share a loaded operand.
template <int P>
__attribute__((noinline)) void multiply(int64_t ksteps, const uint16_t* a, const uint16_t* b) {
  for (int64_t ks = 0; ks < ksteps; ++ks) {
    const uint16_t* ak = a + ks * P * 2 * kTile;
    const uint16_t* bk = b + ks * P * 2 * kTile;
    KILN_LOAD_A(0);
    KILN_LOAD_B(0);
    KILN_DP4;  // x0 y0
    if constexpr (P >= 2) {
      KILN_LOAD_B(1);
      KILN_DP4;  // x0 y1
      KILN_LOAD_A(1);
      if constexpr (P == 3) {
        KILN_DP4;  // x1 y1
      }
      KILN_LOAD_B(0);
      KILN_DP4;  // x1 y0
    }
    if constexpr (P == 3) {
      KILN_LOAD_A(2);
      KILN_DP4;  // x2 y0
      KILN_LOAD_A(0);
      KILN_LOAD_B(2);
      KILN_DP4;  // x0 y2
    }
  }
}

#undef KILN_LOAD_A
#undef KILN_LOAD_B
#undef KILN_DP4

// C[0:mr, 0:nr] (+)= alpha * tile, for tiles that cannot be stored to C directly.
void store_through(const float* tile, float* c, int64_t rs, int64_t cs, int mr, int nr, float alpha, bool accumulate) {
  const __m512 va = _mm512_set1_ps(alpha);
  for (int i = 0; i < mr; ++i) {
    float* ci = c + i * rs;
    const float* ti = tile + i * 32;
    if (cs == 1) {
      for (int j = 0; j < nr; j += 16) {
        const __mmask16 m = simd::mask16(nr - j);
        __m512 v = _mm512_mul_ps(va, _mm512_load_ps(ti + j));
        if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, ci + j));
        _mm512_mask_storeu_ps(ci + j, m, v);
      }
    } else {
      for (int j = 0; j < nr; ++j) ci[j * cs] = alpha * ti[j] + (accumulate ? ci[j * cs] : 0.0f);
    }
  }
}

struct Buffers {
  PackBuffer<uint16_t> a, b;
};

template <int P>
bool rect_planes(const Problem<float>& p, int64_t bi, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const float* A = p.a + bi * p.a_bs;
  const float* B = p.b + bi * p.b_bs;
  float* C = p.c + bi * p.c_bs;
  const int64_t N = n1 - n0, K = p.k;
  const int64_t kc_blk = round_up(ceil_div(K, ceil_div(K, kKc<P>)), 32);
  const int64_t nc_blk = round_up(ceil_div(N, ceil_div(N, kNc)), 32);
  const int64_t block = kc_blk / 32 * P * 2 * kTile;  // one sliver or panel
  thread_local Buffers bufs;
  uint16_t* Ap = bufs.a.get(block);
  uint16_t* Bp = bufs.b.get(nc_blk / 32 * block);
  if (!Ap || !Bp) {
    std::fputs("kiln runtime: out of memory for GEMM packing buffers\n", stderr);
    std::abort();
  }
  configure_tiles();
  alignas(64) float tile[32 * 32];
  __mmask16 bad = 0;
  for (int64_t jc = n0; jc < n1 && !bad; jc += nc_blk) {
    const int64_t nc = n1 - jc < nc_blk ? n1 - jc : nc_blk;
    for (int64_t pc = 0; pc < K && !bad; pc += kc_blk) {
      const int64_t kc = K - pc < kc_blk ? K - pc : kc_blk;
      const int64_t ksteps = ceil_div(kc, 32);
      const int64_t panel = ksteps * P * 2 * kTile;
      for (int64_t q = 0; q * 32 < nc; ++q)
        pack_b<P>(B + pc * p.b_rs + (jc + 32 * q) * p.b_cs, p.b_rs, p.b_cs, int(nc - 32 * q < 32 ? nc - 32 * q : 32),
                  kc, Bp + q * panel, bad);
      for (int64_t ic = m0; ic < m1 && !bad; ic += 32) {
        const int mr = int(m1 - ic < 32 ? m1 - ic : 32);
        pack_a<P>(A + ic * p.a_rs + pc * p.a_cs, p.a_rs, p.a_cs, mr, kc, Ap, bad);
        if (bad) break;
        for (int64_t q = 0; q * 32 < nc; ++q) {
          const int nr = int(nc - 32 * q < 32 ? nc - 32 * q : 32);
          float* c = C + ic * p.c_rs + (jc + 32 * q) * p.c_cs;
          // Full tiles of a unit-stride C go straight between C and the accumulators; later k
          // blocks start from what the earlier ones stored.
          if (mr == 32 && nr == 32 && p.c_cs == 1 && p.alpha == 1.0f) {
            const int64_t ldc = p.c_rs * int64_t(sizeof(float));
            if (pc == 0) {
              _tile_zero(0);
              _tile_zero(1);
              _tile_zero(2);
              _tile_zero(3);
            } else {
              _tile_loadd(0, c, ldc);
              _tile_loadd(1, c + 16, ldc);
              _tile_loadd(2, c + 16 * p.c_rs, ldc);
              _tile_loadd(3, c + 16 * p.c_rs + 16, ldc);
            }
            multiply<P>(ksteps, Ap, Bp + q * panel);
            _tile_stored(0, c, ldc);
            _tile_stored(1, c + 16, ldc);
            _tile_stored(2, c + 16 * p.c_rs, ldc);
            _tile_stored(3, c + 16 * p.c_rs + 16, ldc);
          } else {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            multiply<P>(ksteps, Ap, Bp + q * panel);
            _tile_stored(0, tile, 128);
            _tile_stored(1, tile + 16, 128);
            _tile_stored(2, tile + 512, 128);
            _tile_stored(3, tile + 528, 128);
            store_through(tile, c, p.c_rs, p.c_cs, mr, nr, p.alpha, pc > 0);
          }
        }
      }
    }
  }
  // Hand the tile state back: a thread holding it makes every context switch save 8 KiB more.
  _tile_release();
  return bad == 0;
}

}  // namespace

bool available() {
  static const bool ok = [] {
    const char* env = std::getenv("KILN_GEMM_AMX");
    if (env && env[0] == '0') return false;
    // The target's detection asked the OS for the tile state (kiln_runtime.h: KILN_ISA_AVX512_AMX).
    return kiln_get_target()->detected_isa >= KILN_ISA_AVX512_AMX;
  }();
  return ok;
}

bool Path::rect(const Problem<float>& p, int64_t bi, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  switch (p.bf16_planes) {
    case 1: return rect_planes<1>(p, bi, m0, m1, n0, n1);
    case 2: return rect_planes<2>(p, bi, m0, m1, n0, n1);
    default: return rect_planes<3>(p, bi, m0, m1, n0, n1);
  }
}

#else  // no AMX in this build

bool available() { return false; }
bool Path::rect(const Problem<float>&, int64_t, int64_t, int64_t, int64_t, int64_t) { return false; }

#endif

}  // namespace kiln_rt::gemm::amx
