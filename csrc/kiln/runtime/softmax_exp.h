// softmax_exp.h — exp for softmax arguments, scalar and one vector at a time (the fused attention's).
// Private to the runtime; its error bound is measured in tests/cpp/runtime_math_test.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "kiln/runtime/kiln_prelude.h"

namespace kiln_rt::attn {

// exp(x) for softmax arguments (x <= 0 after the max is subtracted, -inf for masked entries). Below
// -87.3 the result is the smallest normal float instead of 0: next to the row's maximum term (1) that
// is far below rounding, and it keeps the argument where exp_normal holds (one exponent factor, no
// special cases), about half of kiln_rt::exp's instructions.
inline float softmax_exp(float x) {
  return exp_normal(x < -87.3f ? -87.3f : x);  // NaN stays NaN
}
inline double softmax_exp(double x) { return kiln_rt::exp(x); }

// softmax_exp over one vector, the same polynomial as exp_normal. The shift constant rounds x log2(e)
// to an integer in the low mantissa bits of t (2^n is those bits moved into the exponent): no round
// and no float-to-int conversion, both of which issue on one port only.
template <typename V>
V softmax_exp(V x) {
  if constexpr (sizeof(x[0]) == 4) {
    typedef int32_t VI __attribute__((vector_size(sizeof(V))));
    const V lo = V{} - 87.3f, shift = V{} + 12582912.0f;  // 1.5 * 2^23
    x = lo > x ? lo : x;                                  // x < -87.3 -> -87.3; NaN stays NaN
    const V t = x * 1.44269504088896341f + shift;
    const V n = t - shift;
    V r = n * -0.693145751953125f + x;
    r = n * -1.428606765330187045e-06f + r;
    V p = V{} + 1.9875691500E-4f;
    for (float c : {1.3981999507E-3f, 8.3334519073E-3f, 4.1665795894E-2f, 1.6666665459E-1f, 5.0000001201E-1f})
      p = p * r + c;
    p = p * (r * r) + r + 1.0f;
    return p * (V)(((VI)t << 23) + (127 << 23));
  } else {
    for (size_t i = 0; i < sizeof(V) / sizeof(x[0]); ++i) x[i] = softmax_exp(x[i]);
    return x;
  }
}

}  // namespace kiln_rt::attn
