// kernels_table.cpp — the one symbol an ISA level's kernel library exports: its table of kernels.
#include "kiln/runtime/kernels.h"
#include "kiln/runtime/simd.h"

namespace {

using namespace kiln_rt::kernels;

// Below the AMX level, float GEMMs stay on the FMA kernels whatever precision the graph allows.
int gemm_f32_fma(int64_t batch, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t a_bs,
                 int64_t a_rs, int64_t a_cs, const float* b, int64_t b_bs, int64_t b_rs, int64_t b_cs, float beta,
                 float* c, int64_t c_bs, int64_t c_rs, int64_t c_cs, int, kiln_range_fn rows_done, void* rows_ctx) {
  return gemm_f32(batch, m, n, k, alpha, a, a_bs, a_rs, a_cs, b, b_bs, b_rs, b_cs, beta, c, c_bs, c_rs, c_cs, 0,
                  rows_done, rows_ctx);
}
int gemm_group_f32_fma(int64_t parts, int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs,
                       const float* const* b, int64_t b_rs, int64_t b_cs, float* const* c, int64_t c_rs, int64_t c_cs,
                       int, kiln_range_fn rows_done, void* rows_ctx) {
  return gemm_group_f32(parts, m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, c_rs, c_cs, 0, rows_done, rows_ctx);
}
void gemm_shared_b_f32_fma(int64_t parts, int64_t m, int64_t n, int64_t k, const float* const* a, int64_t a_rs,
                           int64_t a_cs, const float* b, int64_t b_rs, int64_t b_cs, float* const* c, int64_t c_rs,
                           int64_t c_cs, int) {
  gemm_shared_b_f32(parts, m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, c_rs, c_cs, 0);
}
int no_amx() { return 0; }

kiln_kernels table(int isa, bool amx) {
  return kiln_kernels{isa,
                      amx ? gemm_f32 : gemm_f32_fma,
                      gemm_f64,
                      amx ? gemm_group_f32 : gemm_group_f32_fma,
                      gemm_group_f64,
                      amx ? gemm_shared_b_f32 : gemm_shared_b_f32_fma,
                      gemm_shared_b_f64,
                      amx ? gemm_has_amx : no_amx,
                      attention_fwd_f32,
                      attention_fwd_f64,
                      attention_bwd_f32,
                      attention_bwd_f64};
}

// The level this library was compiled for (simd.h), and the levels it serves.
constexpr int kBuiltLevel = kiln_rt::simd::kVectorBytes == 64   ? KILN_ISA_AVX512
                            : kiln_rt::simd::kVectorBytes == 32 ? KILN_ISA_AVX2
                                                                : KILN_ISA_BASELINE;

}  // namespace

extern "C" __attribute__((visibility("default"))) const kiln_kernels* kiln_isa_kernels(int isa) {
  static const kiln_kernels plain = table(kBuiltLevel, false);
  static const kiln_kernels with_amx = table(KILN_ISA_AVX512_AMX, true);
  if (isa == kBuiltLevel) return &plain;
  if (isa == KILN_ISA_AVX512_AMX && kBuiltLevel == KILN_ISA_AVX512) return &with_amx;
  return nullptr;
}
