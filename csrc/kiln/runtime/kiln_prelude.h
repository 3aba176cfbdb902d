// kiln_prelude.h — scalar helpers included by every generated translation unit.
//
// Everything here is inline (the compiler must see it to vectorize) and follows PyTorch's eager
// semantics exactly: NaN propagates through max/min/clamp/relu, integer division and modulo
// round like Python's, and nothing assumes finite math. It includes no standard C++ header on
// purpose: <cmath>, <algorithm> and <atomic> cost the compiler more than a whole graph's kernels,
// so the math functions are the compiler's builtins (the same libm routines std:: calls).
#pragma once
#include <stdint.h>

#include "kiln/runtime/kiln_runtime.h"

namespace kiln_rt {

template <class T> struct is_fp { static constexpr bool value = false; };
template <> struct is_fp<float> { static constexpr bool value = true; };
template <> struct is_fp<double> { static constexpr bool value = true; };

// ---- libm, by overload ---------------------------------------------------------------------------
#define KILN_MATH1(name)                                                  \
  inline float name(float x) { return __builtin_##name##f(x); }          \
  inline double name(double x) { return __builtin_##name(x); }
#define KILN_MATH2(name)                                                  \
  inline float name(float x, float y) { return __builtin_##name##f(x, y); } \
  inline double name(double x, double y) { return __builtin_##name(x, y); }
KILN_MATH1(exp2) KILN_MATH1(expm1) KILN_MATH1(log) KILN_MATH1(log2) KILN_MATH1(log1p)
KILN_MATH1(sqrt) KILN_MATH1(sin) KILN_MATH1(cos) KILN_MATH1(tan) KILN_MATH1(tanh) KILN_MATH1(erf)
KILN_MATH1(floor) KILN_MATH1(ceil) KILN_MATH1(trunc) KILN_MATH1(nearbyint) KILN_MATH1(fabs)
KILN_MATH2(fmod) KILN_MATH2(pow) KILN_MATH2(atan2)
inline float fma(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
inline double fma(double a, double b, double c) { return __builtin_fma(a, b, c); }
#undef KILN_MATH1

// exp for float in straight-line arithmetic, so loops calling it vectorize (libm's expf is a call
// per element). Cody-Waite reduction by ln 2, a degree-6 polynomial, and 2^n applied in two factors
// so denormal results are right. Measured: at most 1 ulp from the correctly rounded result over
// every float in [-104, 89] (tests/cpp/runtime_math_test.cpp); inf, -inf, NaN and overflow exact.
inline float bits_as_float(int32_t i) {
  float f;
  __builtin_memcpy(&f, &i, 4);
  return f;
}
inline float exp(float x) {
  const float hi = 88.72283935546875f;     // above: +inf
  const float lo = -103.972084045410156f;  // below: +0
  float xc = x > hi ? hi : (x < lo ? lo : x);
  float n = __builtin_nearbyintf(xc * 1.44269504088896341f);
  float r = __builtin_fmaf(n, -0.693145751953125f, xc);
  r = __builtin_fmaf(n, -1.428606765330187045e-06f, r);
  float p = 1.9875691500E-4f;
  p = __builtin_fmaf(p, r, 1.3981999507E-3f);
  p = __builtin_fmaf(p, r, 8.3334519073E-3f);
  p = __builtin_fmaf(p, r, 4.1665795894E-2f);
  p = __builtin_fmaf(p, r, 1.6666665459E-1f);
  p = __builtin_fmaf(p, r, 5.0000001201E-1f);
  p = __builtin_fmaf(p, r * r, r) + 1.0f;
  int32_t ni = static_cast<int32_t>(n);
  int32_t n1 = ni >> 1, n2 = ni - n1;
  float y = p * bits_as_float((n1 + 127) << 23) * bits_as_float((n2 + 127) << 23);
  y = x > hi ? __builtin_inff() : y;
  y = x < lo ? 0.0f : y;
  return x != x ? x : y;
}
inline double exp(double x) { return __builtin_exp(x); }
#undef KILN_MATH2

template <class T> inline bool isnan_(T x) {
  if constexpr (is_fp<T>::value) return __builtin_isnan(x); else return false;
}
template <class T> inline T iabs(T x) { return x < 0 ? -x : x; }
inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max_i64(int64_t a, int64_t b) { return a > b ? a : b; }

template <class T> inline T infinity() {
  if constexpr (sizeof(T) == 4) return __builtin_inff(); else return __builtin_inf();
}
template <class T> inline T quiet_nan() {
  if constexpr (sizeof(T) == 4) return __builtin_nanf(""); else return __builtin_nan("");
}
template <class T> inline T lowest() {
  if constexpr (is_fp<T>::value) return -infinity<T>();
  else if constexpr (sizeof(T) == 1) return T(0);  // bool
  else if constexpr (sizeof(T) == 4) return T(INT32_MIN);
  else return T(INT64_MIN);
}
template <class T> inline T highest() {
  if constexpr (is_fp<T>::value) return infinity<T>();
  else if constexpr (sizeof(T) == 1) return T(1);  // bool
  else if constexpr (sizeof(T) == 4) return T(INT32_MAX);
  else return T(INT64_MAX);
}

// ---- activations ---------------------------------------------------------------------------------
template <class T> inline T relu(T x) { return isnan_(x) ? x : (x > T(0) ? x : T(0)); }
template <class T> inline T sigmoid(T x) { return T(1) / (T(1) + exp(-x)); }
template <class T> inline T silu(T x) { return x / (T(1) + exp(-x)); }
template <class T> inline T gelu(T x) { return T(0.5) * x * (T(1) + erf(x * T(0.70710678118654752440))); }
template <class T> inline T gelu_tanh(T x) {
  const T k = T(0.79788456080286535588);  // sqrt(2/pi)
  return T(0.5) * x * (T(1) + tanh(k * (x + T(0.044715) * x * x * x)));
}
template <class T> inline T rsqrt(T x) { return T(1) / sqrt(x); }
template <class T> inline T reciprocal(T x) { return T(1) / x; }
// Eager's sign(NaN) is 0: both comparisons are false.
template <class T> inline T sign(T x) { return T((T(0) < x) - (x < T(0))); }
template <class T> inline T round_half_even(T x) { return nearbyint(x); }

// ---- NaN-propagating binary ops ------------------------------------------------------------------
template <class T> inline T maximum(T a, T b) {
  if (isnan_(a) || isnan_(b)) return quiet_nan<T>();
  return a > b ? a : b;
}
template <class T> inline T minimum(T a, T b) {
  if (isnan_(a) || isnan_(b)) return quiet_nan<T>();
  return a < b ? a : b;
}

// ---- Python's integer and float division/modulo ---------------------------------------------------
template <class T> inline T floordiv(T a, T b) {
  if constexpr (is_fp<T>::value) {
    return floor(a / b);
  } else {
    if (b == 0) return 0;  // ATen raises; kiln's entry guards integer division by zero upstream
    T q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
  }
}
template <class T> inline T truncdiv(T a, T b) {
  if constexpr (is_fp<T>::value) return trunc(a / b);
  else return b == 0 ? 0 : a / b;
}
template <class T> inline T remainder(T a, T b) {
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
template <class T> inline T fmod_(T a, T b) {
  if constexpr (is_fp<T>::value) return fmod(a, b);
  else return b == 0 ? 0 : a % b;
}
template <class T> inline T pow_(T a, T b) {
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
template <class T> inline T max_step(T acc, T x) {
  if constexpr (is_fp<T>::value) return (x > acc || isnan_(x)) && !isnan_(acc) ? x : acc;
  else return x > acc ? x : acc;
}
template <class T> inline T min_step(T acc, T x) {
  if constexpr (is_fp<T>::value) return (x < acc || isnan_(x)) && !isnan_(acc) ? x : acc;
  else return x < acc ? x : acc;
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
inline int64_t checked_index(int64_t i, int64_t size, bool wrap_negative) {
  if (i < 0 && wrap_negative) i += size;
  if (i < 0 || i >= size) {
    __atomic_store_n(&index_error_flag(), 1, __ATOMIC_RELAXED);
    return 0;
  }
  return i;
}

// ---- scratch rows --------------------------------------------------------------------------------
// A thread's scratch row for a kernel-local value too large for the stack.
template <class T> struct Row {
  T* data;
  explicit Row(int64_t n) : data(static_cast<T*>(__builtin_malloc(sizeof(T) * static_cast<uint64_t>(n > 0 ? n : 1)))) {}
  ~Row() { __builtin_free(data); }
  Row(const Row&) = delete;
  Row& operator=(const Row&) = delete;
};

}  // namespace kiln_rt
