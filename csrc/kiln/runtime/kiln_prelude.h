// kiln_prelude.h — scalar helpers included by every generated translation unit.
//
// Everything here is inline (the compiler must see it to vectorize) and follows PyTorch's eager
// semantics exactly: NaN propagates through max/min/clamp/relu, integer division and modulo
// round like Python's, and nothing assumes finite math. It includes no standard C++ header on
// purpose: <cmath>, <algorithm> and <atomic> cost the compiler more than a whole graph's kernels,
// so the math functions are the compiler's builtins (the same libm routines std:: calls), except
// the float functions written out below so that loops calling them vectorize.
#pragma once
#include <stdint.h>

#include "kiln/runtime/kiln_runtime.h"

namespace kiln_rt {

template <class T>
struct is_fp {
  static constexpr bool value = false;
};
template <>
struct is_fp<float> {
  static constexpr bool value = true;
};
template <>
struct is_fp<double> {
  static constexpr bool value = true;
};

// ---- libm, by overload ---------------------------------------------------------------------------
#define KILN_MATH1(name)                                        \
  inline float name(float x) { return __builtin_##name##f(x); } \
  inline double name(double x) { return __builtin_##name(x); }  \
  static_assert(true)
#define KILN_MATH2(name)                                                    \
  inline float name(float x, float y) { return __builtin_##name##f(x, y); } \
  inline double name(double x, double y) { return __builtin_##name(x, y); } \
  static_assert(true)
KILN_MATH1(exp2);
KILN_MATH1(log2);
KILN_MATH1(sqrt);
KILN_MATH1(sin);
KILN_MATH1(cos);
KILN_MATH1(tan);
KILN_MATH1(floor);
KILN_MATH1(ceil);
KILN_MATH1(trunc);
KILN_MATH1(nearbyint);
KILN_MATH1(fabs);
KILN_MATH2(fmod);
KILN_MATH2(pow);
KILN_MATH2(atan2);
inline float fma(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
inline double fma(double a, double b, double c) { return __builtin_fma(a, b, c); }
#undef KILN_MATH1
#undef KILN_MATH2

// ---- float exp, expm1, log, log1p, tanh, erf in straight-line arithmetic --------------------------
// libm's float functions are a call per element, which stops a loop from vectorizing; these are
// branch-free (special cases are selects at the end), so GCC vectorizes loops calling them. Double
// stays on libm. Every multiply-add is an explicit fmaf, so the result does not depend on whether the
// compiler contracts a*b+c (generated code is built with -march=native, where it does): results are
// the same bit for bit with and without FMA hardware. Error bounds are measured against double libm
// rounded to float, over every float in the stated range, by tests/cpp/runtime_math_test.cpp.
inline float bits_as_float(int32_t i) {
  float f;
  __builtin_memcpy(&f, &i, 4);
  return f;
}
inline int32_t float_as_bits(float f) {
  int32_t i;
  __builtin_memcpy(&i, &f, 4);
  return i;
}
// c ? a : b in bit operations. A float ?: is a branch to GCC until if-conversion, and code motion
// before that (PRE, sinking) can move arithmetic under the branch; without AVX-512's masked
// instructions the if-converter must then leave it there, and the loop stays scalar.
inline float select(bool c, float a, float b) {
  int32_t m = -static_cast<int32_t>(c);
  return bits_as_float((float_as_bits(a) & m) | (float_as_bits(b) & ~m));
}
inline double select(bool c, double a, double b) { return c ? a : b; }  // double math is libm's: scalar anyway

// p(x) = c0 x^n + c1 x^(n-1) + ... + cn by Horner's rule, one fma per step, highest degree first.
template <class... C>
inline float horner(float x, float c0, C... cs) {
  float p = c0;
  ((p = __builtin_fmaf(p, x, cs)), ...);
  return p;
}

// expm1(r) for |r| <= ln2/2: r + r^2 P(r), the Cephes expf polynomial.
inline float expm1_kernel(float r) {
  float p = horner(r, 1.9875691500E-4f, 1.3981999507E-3f, 8.3334519073E-3f, 4.1665795894E-2f, 1.6666665459E-1f,
                   5.0000001201E-1f);
  return __builtin_fmaf(p, r * r, r);
}

// exp: Cody-Waite reduction by ln 2, the polynomial above, and 2^n applied in two factors so
// denormal results are right. The clamp needs no special cases after it: from 89 (above the last
// finite result) the product overflows to inf, at -104 (below the last nonzero one) it rounds to 0,
// and a NaN passes the clamp and every operation after it. Measured: at most 1 ulp over every float
// in [-104, 89]; inf, -inf, NaN and overflow exact.
inline float exp(float x) {
  const float hi = 89.0f, lo = -104.0f;
  float xc = select(x > hi, hi, select(x < lo, lo, x));
  float n = __builtin_nearbyintf(xc * 1.44269504088896341f);
  float r = __builtin_fmaf(n, -0.693145751953125f, xc);
  r = __builtin_fmaf(n, -1.428606765330187045e-06f, r);
  float p = expm1_kernel(r) + 1.0f;
  int32_t ni = static_cast<int32_t>(n);
  int32_t n1 = ni >> 1, n2 = ni - n1;
  return p * bits_as_float((n1 + 127) << 23) * bits_as_float((n2 + 127) << 23);
}
inline double exp(double x) { return __builtin_exp(x); }

// e^x where the caller knows it is a normal float (x in [-87, 88]): exp's reduction and polynomial
// with 2^n as one exponent, no clamp (tanh's and erf's inner exp). Lanes outside give garbage the
// caller selects away.
inline float exp_normal(float x) {
  float n = __builtin_nearbyintf(x * 1.44269504088896341f);
  float r = __builtin_fmaf(n, -0.693145751953125f, x);
  r = __builtin_fmaf(n, -1.428606765330187045e-06f, r);
  return (expm1_kernel(r) + 1.0f) * bits_as_float((static_cast<int32_t>(n) + 127) << 23);
}

// expm1 = 2^n (1 + q) - 1 with q = expm1(r), computed as 2 (2^(n-1) q + (2^(n-1) - 1/2)): the
// addend is exact wherever the -1 matters, and 2^(n-1) stays finite up to overflow; for |x| < ln2/2
// it is q itself. Measured: at most 1 ulp over every float; -0, +-inf, NaN and overflow exact.
inline float expm1(float x) {
  const float hi = 88.72283935546875f;  // above: +inf
  const float lo = -17.5f;              // below: -1 (e^x is under half an ulp of 1)
  float xc = select(x > hi, hi, select(x < lo, lo, x));
  float n = __builtin_nearbyintf(xc * 1.44269504088896341f);
  float r = __builtin_fmaf(n, -0.693145751953125f, xc);
  r = __builtin_fmaf(n, -1.428606765330187045e-06f, r);
  float q = expm1_kernel(r);
  float s = bits_as_float((static_cast<int32_t>(n) + 126) << 23);  // 2^(n-1)
  float y = 2.0f * __builtin_fmaf(s, q, s - 0.5f);
  y = select(n == 0.0f, q, y);  // halving q would flush its last denormal bit
  y = select(x > hi, __builtin_inff(), y);
  y = select(x < lo, -1.0f, y);
  y = select(x == 0.0f, x, y);
  return select(x != x, x, y);
}
inline double expm1(double x) { return __builtin_expm1(x); }

// log(x) + c, for x > 0 finite and c at most an ulp of the result (log1p's rounding correction): x
// = 2^k m with m in [sqrt(1/2), sqrt(2)), log m = f - f^2/2 + f^3 P(f) with f = m - 1 exact (the
// Cephes logf polynomial), k ln 2 in two parts. Denormal x is scaled by 2^23 first.
inline float log_plus(float x, float c) {
  bool tiny = x < 0x1p-126f;
  int32_t ix = float_as_bits(select(tiny, x * 0x1p23f, x)) & 0x7fffffff;
  int32_t t = ix - 0x3f3504f3;  // bits of sqrt(1/2)
  int32_t k = (t >> 23) - (tiny ? 23 : 0);
  float f = bits_as_float(ix - (t & static_cast<int32_t>(0xff800000))) - 1.0f;
  float kf = static_cast<float>(k);
  float z = f * f;
  float p = horner(f, 7.0376836292E-2f, -1.1514610310E-1f, 1.1676998740E-1f, -1.2420140846E-1f, 1.4249322787E-1f,
                   -1.6668057665E-1f, 2.0000714765E-1f, -2.4999993993E-1f, 3.3333331174E-1f);
  float y = __builtin_fmaf(kf, -2.12194440e-4f, c);
  y = __builtin_fmaf(f * z, p, y);
  y = __builtin_fmaf(-0.5f, z, y);
  return __builtin_fmaf(kf, 0.693359375f, f + y);
}

// Measured: at most 1 ulp over every positive float, denormals included; log(0) = -inf,
// log(x < 0) = NaN, log(inf) = inf, NaN propagates.
inline float log(float x) {
  float r = log_plus(x, 0.0f);
  r = select(x == __builtin_inff(), x, r);
  r = select(x == 0.0f, -__builtin_inff(), r);
  r = select(x < 0.0f, __builtin_nanf(""), r);
  return select(x != x, x, r);
}
inline double log(double x) { return __builtin_log(x); }

// log1p = log(u) + (the rounding error of u = 1 + x) / u, the error exact by Fast2Sum (the larger of
// 1 and x first) and added before log's last rounding. Measured: at most 1 ulp over every float in
// (-1, inf); log1p(-1) = -inf, below -1 NaN, -0, inf and NaN exact.
inline float log1p(float x) {
  float u = 1.0f + x;
  float err = select(__builtin_fabsf(x) > 1.0f, 1.0f - (u - x), x - (u - 1.0f));
  float r = log_plus(u, err / u);
  r = select(x == __builtin_inff(), x, r);
  r = select(x == 0.0f, x, r);
  r = select(x == -1.0f, -__builtin_inff(), r);
  r = select(x < -1.0f, __builtin_nanf(""), r);
  return select(x != x, x, r);
}
inline double log1p(double x) { return __builtin_log1p(x); }

// tanh: x + x^3 P(x^2) below 0.625 (the Cephes tanhf polynomial), else 1 - 2 / (e^2|x| + 1) with
// the exp above; |x| is clamped at 9.5, where tanh is 1 in float. Measured: at most 1 ulp over
// every float; tanh(+-inf) = +-1, -0 and NaN exact.
inline float tanh(float x) {
  float a = __builtin_fabsf(x);
  float z = x * x;
  float p = horner(z, -5.70498872745E-3f, 2.06390887954E-2f, -5.37397155531E-2f, 1.33314422036E-1f, -3.33332819422E-1f);
  float small = __builtin_fmaf(a * z, p, a);
  float ac = select(a > 9.5f, 9.5f, a);
  float e = exp_normal(ac + ac);
  float big = 1.0f - 2.0f / (e + 1.0f);
  return __builtin_copysignf(select(a < 0.625f, small, big), x);
}
inline double tanh(double x) { return __builtin_tanh(x); }

// erf: x + x P(x^2) below 0.921875; above, 1 - exp(Q(|x|)) with Q ~ log erfc, fitted to minimize the
// error of erf itself (weight erfc); 1 from 3.9192059, where erf rounds to 1. Both polynomials are
// minimax fits (float coefficients, degree 6). Measured: at most 1 ulp over every float;
// erf(+-inf) = +-1, -0 and NaN exact.
inline float erf(float x) {
  float a = __builtin_fabsf(x);
  float z = x * x;
  float p = horner(z, 7.992304018e-05f, -8.049064199e-04f, 5.192369223e-03f, -2.685572580e-02f, 1.128362566e-01f,
                   -3.761262894e-01f, 1.283791661e-01f);  // last: 2/sqrt(pi) - 1
  float small = __builtin_fmaf(a, p, a);
  float q = horner(a, 1.947348792e-04f, -3.031591885e-03f, 2.218134701e-02f, -1.038388088e-01f, -6.372858286e-01f,
                   -1.127615452e+00f, -2.099051344e-04f);
  // Below 3.9192059, q >= -17: e^q is normal (beyond, and for NaN, the lane is selected away).
  float big = select(a >= 3.9192059f, 1.0f, 1.0f - exp_normal(q));
  return __builtin_copysignf(select(a < 0.921875f, small, big), x);
}
inline double erf(double x) { return __builtin_erf(x); }

template <class T>
inline bool isnan_(T x) {
  if constexpr (is_fp<T>::value)
    return __builtin_isnan(x);
  else
    return false;
}
template <class T>
inline T iabs(T x) {
  return x < 0 ? -x : x;
}
inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max_i64(int64_t a, int64_t b) { return a > b ? a : b; }

template <class T>
inline T infinity() {
  if constexpr (sizeof(T) == 4)
    return __builtin_inff();
  else
    return __builtin_inf();
}
template <class T>
inline T quiet_nan() {
  if constexpr (sizeof(T) == 4)
    return __builtin_nanf("");
  else
    return __builtin_nan("");
}
template <class T>
inline T lowest() {
  if constexpr (is_fp<T>::value)
    return -infinity<T>();
  else if constexpr (sizeof(T) == 1)
    return T(0);  // bool
  else if constexpr (sizeof(T) == 4)
    return T(INT32_MIN);
  else
    return T(INT64_MIN);
}
template <class T>
inline T highest() {
  if constexpr (is_fp<T>::value)
    return infinity<T>();
  else if constexpr (sizeof(T) == 1)
    return T(1);  // bool
  else if constexpr (sizeof(T) == 4)
    return T(INT32_MAX);
  else
    return T(INT64_MAX);
}

// ---- activations ---------------------------------------------------------------------------------
template <class T>
inline T relu(T x) {
  return isnan_(x) ? x : (x > T(0) ? x : T(0));
}
template <class T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + exp(-x));
}
template <class T>
inline T silu(T x) {
  return x / (T(1) + exp(-x));
}
template <class T>
inline T gelu(T x) {
  return T(0.5) * x * (T(1) + erf(x * T(0.70710678118654752440)));
}
template <class T>
inline T gelu_tanh(T x) {
  const T k = T(0.79788456080286535588);  // sqrt(2/pi)
  return T(0.5) * x * (T(1) + tanh(k * (x + T(0.044715) * x * x * x)));
}
// IEEE sqrt then division, both vectorized (generated code gets -fno-math-errno): at most 1 ulp for
// float, measured over every positive float; rsqrt(+-0) = +-inf, rsqrt(inf) = 0, x < 0 gives NaN.
template <class T>
inline T rsqrt(T x) {
  return T(1) / sqrt(x);
}
template <class T>
inline T reciprocal(T x) {
  return T(1) / x;
}
// Eager's sign(NaN) is 0: both comparisons are false.
template <class T>
inline T sign(T x) {
  return T((T(0) < x) - (x < T(0)));
}
template <class T>
inline T round_half_even(T x) {
  return nearbyint(x);
}

// ---- NaN-propagating binary ops ------------------------------------------------------------------
template <class T>
inline T maximum(T a, T b) {
  if (isnan_(a) || isnan_(b)) return quiet_nan<T>();
  return a > b ? a : b;
}
template <class T>
inline T minimum(T a, T b) {
  if (isnan_(a) || isnan_(b)) return quiet_nan<T>();
  return a < b ? a : b;
}

// ---- Python's integer and float division/modulo ---------------------------------------------------
template <class T>
inline T floordiv(T a, T b) {
  if constexpr (is_fp<T>::value) {
    return floor(a / b);
  } else {
    if (b == 0) return 0;  // ATen raises; kiln's entry guards integer division by zero upstream
    T q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
  }
}
template <class T>
inline T truncdiv(T a, T b) {
  if constexpr (is_fp<T>::value)
    return trunc(a / b);
  else
    return b == 0 ? 0 : a / b;
}
template <class T>
inline T remainder(T a, T b) {
  if constexpr (is_fp<T>::value) {
    T r = fmod(a, b);
    if (r != T(0) && ((r < T(0)) != (b < T(0)))) r += b;
    return r;
  } else {
    if (b == 0) return 0;
    T r = a % b;
    if (r != 0 && ((r < 0) != (b < 0))) r += b;
    return r;
  }
}
template <class T>
inline T fmod_(T a, T b) {
  if constexpr (is_fp<T>::value)
    return fmod(a, b);
  else
    return b == 0 ? 0 : a % b;
}
template <class T>
inline T pow_(T a, T b) {
  if constexpr (is_fp<T>::value) {
    return pow(a, b);
  } else {
    if (b < 0) return a == 1 ? 1 : (a == -1 ? ((b & 1) ? -1 : 1) : 0);
    T r = 1;
    while (b) {
      if (b & 1) r *= a;
      a *= a;
      b >>= 1;
    }
    return r;
  }
}

// ---- reduction steps that keep NaN (eager's max/min return NaN when any element is NaN) ----------
template <class T>
inline T max_step(T acc, T x) {
  if constexpr (is_fp<T>::value)
    return (x > acc || isnan_(x)) && !isnan_(acc) ? x : acc;
  else
    return x > acc ? x : acc;
}
template <class T>
inline T min_step(T acc, T x) {
  if constexpr (is_fp<T>::value)
    return (x < acc || isnan_(x)) && !isnan_(acc) ? x : acc;
  else
    return x < acc ? x : acc;
}

// ---- index checks --------------------------------------------------------------------------------
// A bad index is recorded (the entry function then fails with a message) and replaced by 0 so the
// kernel never reads out of bounds.
inline int& index_error_flag() {
  static int flag = 0;
  return flag;
}
inline void clear_index_error() { __atomic_store_n(&index_error_flag(), 0, __ATOMIC_RELAXED); }
inline bool index_error() { return __atomic_load_n(&index_error_flag(), __ATOMIC_RELAXED) != 0; }
inline void set_index_error() { __atomic_store_n(&index_error_flag(), 1, __ATOMIC_RELAXED); }
inline int64_t checked_index(int64_t i, int64_t size, bool wrap_negative) {
  if (i < 0 && wrap_negative) i += size;
  if (i < 0 || i >= size) {
    set_index_error();
    return 0;
  }
  return i;
}
// Kernels record a bad index in their own `bad` (an OR the compiler vectorizes, where the shared
// flag's store would keep the loop scalar) and set the shared flag once, at their end.
inline int64_t checked_index(int64_t i, int64_t size, bool wrap_negative, int& bad) {
  if (i < 0 && wrap_negative) i += size;
  const int out = i < 0 || i >= size;  // an int: the compiler vectorizes an int OR, not a bool one
  bad |= out;
  return out ? 0 : i;
}

// ---- scratch rows --------------------------------------------------------------------------------
// A thread's scratch row for a kernel-local value too large for the stack.
template <class T>
struct Row {
  T* data;
  explicit Row(int64_t n) : data(static_cast<T*>(__builtin_malloc(sizeof(T) * static_cast<uint64_t>(n > 0 ? n : 1)))) {}
  ~Row() { __builtin_free(data); }
  Row(const Row&) = delete;
  Row& operator=(const Row&) = delete;
};

}  // namespace kiln_rt
