// kiln_prelude.h — scalar helpers included by every generated translation unit.
//
// Everything here is inline (the compiler must see it to vectorize) and follows PyTorch's eager
// semantics exactly: NaN propagates through max/min/clamp/relu, integer division and modulo
// round like Python's, and nothing assumes finite math.
#pragma once
#include <stdint.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <type_traits>

#include "kiln/runtime/kiln_runtime.h"

namespace kiln_rt {

template <class T> inline T relu(T x) { return std::isnan(x) ? x : (x > T(0) ? x : T(0)); }
template <class T> inline T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }
template <class T> inline T silu(T x) { return x / (T(1) + std::exp(-x)); }
template <class T> inline T gelu(T x) { return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752440))); }
template <class T> inline T gelu_tanh(T x) {
  const T k = T(0.79788456080286535588);  // sqrt(2/pi)
  return T(0.5) * x * (T(1) + std::tanh(k * (x + T(0.044715) * x * x * x)));
}
template <class T> inline T rsqrt(T x) { return T(1) / std::sqrt(x); }
template <class T> inline T reciprocal(T x) { return T(1) / x; }
template <class T> inline T sign(T x) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(x)) return x;
  }
  return T((T(0) < x) - (x < T(0)));
}
template <class T> inline T round_half_even(T x) { return std::nearbyint(x); }
template <class T> inline bool isnan_(T x) {
  if constexpr (std::is_floating_point_v<T>) return std::isnan(x); else return false;
}
template <class T> inline T maximum(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<T>::quiet_NaN();
  }
  return a > b ? a : b;
}
template <class T> inline T minimum(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<T>::quiet_NaN();
  }
  return a < b ? a : b;
}
// Python's floor division and modulo (ATen's div(rounding_mode='floor') and remainder).
template <class T> inline T floordiv(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    return std::floor(a / b);
  } else {
    if (b == 0) return 0;  // ATen raises; kiln's entry guards integer division by zero upstream
    T q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
  }
}
template <class T> inline T truncdiv(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) return std::trunc(a / b);
  else return b == 0 ? 0 : a / b;
}
template <class T> inline T remainder(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    T r = std::fmod(a, b);
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
  if constexpr (std::is_floating_point_v<T>) return std::fmod(a, b);
  else return b == 0 ? 0 : a % b;
}
template <class T> inline T pow_(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    return std::pow(a, b);
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
// Reduction steps that keep NaN (eager's max/min return NaN when any element is NaN).
template <class T> inline T max_step(T acc, T x) {
  if constexpr (std::is_floating_point_v<T>) return (x > acc || std::isnan(x)) && !std::isnan(acc) ? x : acc;
  else return x > acc ? x : acc;
}
template <class T> inline T min_step(T acc, T x) {
  if constexpr (std::is_floating_point_v<T>) return (x < acc || std::isnan(x)) && !std::isnan(acc) ? x : acc;
  else return x < acc ? x : acc;
}
template <class T> inline T lowest() {
  if constexpr (std::is_floating_point_v<T>) return -std::numeric_limits<T>::infinity();
  else return std::numeric_limits<T>::lowest();
}
template <class T> inline T highest() {
  if constexpr (std::is_floating_point_v<T>) return std::numeric_limits<T>::infinity();
  else return std::numeric_limits<T>::max();
}

// Index checks: a bad index is recorded (the entry function then fails with a message) and
// replaced by 0 so the kernel never reads out of bounds.
inline std::atomic<int>& index_error_flag() {
  static std::atomic<int> flag{0};
  return flag;
}
inline int64_t checked_index(int64_t i, int64_t size) {
  if (i < 0) i += size;
  if (i < 0 || i >= size) {
    index_error_flag().store(1, std::memory_order_relaxed);
    return 0;
  }
  return i;
}

}  // namespace kiln_rt
