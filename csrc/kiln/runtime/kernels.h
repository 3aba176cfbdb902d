// kernels.h — the kernels one ISA level's library provides, as its table (kiln_kernels) lists them.
// Defined in gemm.cpp and attention.cpp, compiled once per level; private to those libraries.
#pragma once

#include "kiln/runtime/kiln_runtime.h"

namespace kiln_rt::kernels {

kiln_gemm_f32_fn gemm_f32;
kiln_gemm_f64_fn gemm_f64;
kiln_gemm_group_f32_fn gemm_group_f32;
kiln_gemm_group_f64_fn gemm_group_f64;
kiln_gemm_shared_b_f32_fn gemm_shared_b_f32;
kiln_gemm_shared_b_f64_fn gemm_shared_b_f64;
kiln_gemm_has_amx_fn gemm_has_amx;
kiln_attention_fwd_f32_fn attention_fwd_f32;
kiln_attention_fwd_f64_fn attention_fwd_f64;
kiln_attention_bwd_f32_fn attention_bwd_f32;
kiln_attention_bwd_f64_fn attention_bwd_f64;

}  // namespace kiln_rt::kernels
