// gemm_common.h — what gemm.cpp and gemm_amx.cpp share: the problem description, rounding, buffers.
// Private to the runtime.
#pragma once

#include <cstdint>
#include <cstdlib>

namespace kiln_rt::gemm {

// One strided batched GEMM: C_b = alpha * A_b B_b + beta * C_b (strides in elements).
template <typename T>
struct Problem {
  int64_t batch, m, n, k;
  T alpha, beta;
  const T* a;
  int64_t a_bs, a_rs, a_cs;
  const T* b;
  int64_t b_bs, b_rs, b_cs;
  T* c;
  int64_t c_bs, c_rs, c_cs;
  // float only: > 0 lets the product run on AMX with each float split into this many bfloat16
  // planes (see gemm_amx.h); 0 keeps it on the FMA kernels.
  int bf16_planes = 0;
  // Row epilogue (kiln_gemm_f32): called per finished block of rows when rows_inline holds.
  void (*rows_done)(void*, int64_t, int64_t) = nullptr;
  void* rows_ctx = nullptr;
  bool rows_inline = false;  // rows of this problem are the caller's rows (no transposed C, no shared C)
  // A group of products computed as one (batch is 1). Sharing A (kiln_gemm_group_*): n = parts *
  // part columns, column j in part j / part, whose B and C start at b_parts / c_parts. Sharing B
  // (kiln_gemm_shared_b_*, rows_in_parts): m = parts * part rows, row i in part i / part, A and C at
  // a_parts / c_parts. Parts are whole micro-tiles (NR columns, MR rows), so none straddles two.
  int64_t parts = 1, part = 0;
  bool rows_in_parts = false;
  const T* const* a_parts = nullptr;
  const T* const* b_parts = nullptr;
  T* const* c_parts = nullptr;
  uint64_t call = 0;  // which kiln_gemm call this is: operands do not change within one
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Per-thread packing buffers, grown on demand and kept for the thread's life.
template <typename T>
class PackBuffer {
 public:
  ~PackBuffer() { std::free(p_); }
  size_t capacity() const { return cap_; }
  T* get(int64_t elems) {
    const size_t bytes = static_cast<size_t>(round_up(elems * static_cast<int64_t>(sizeof(T)), 4096));
    if (bytes > cap_) {
      std::free(p_);
      p_ = static_cast<T*>(std::aligned_alloc(4096, bytes));
      cap_ = p_ ? bytes : 0;
    }
    return p_;
  }

 private:
  T* p_ = nullptr;
  size_t cap_ = 0;
};

}  // namespace kiln_rt::gemm
