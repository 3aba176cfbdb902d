// kiln_runtime.h — the fixed C ABI that generated kernels (and the kiln module) link against.
//
// Generated code includes only this header (and the C++ standard library). Keep it C-compatible,
// stable, and free of any other kiln header: changing a signature here invalidates every cache entry
// (the header's contents are part of the cache key).
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- threads -------------------------------------------------------------------------------------
// fn(ctx, begin, end) is called on disjoint chunks covering [begin, end). Chunks are at least `grain`
// long (except the last). Runs inline when the range is small, when only one thread is configured,
// or when called from inside a worker (no nested parallelism). Returns when every chunk is done.
typedef void (*kiln_range_fn)(void* ctx, int64_t begin, int64_t end);
void kiln_parallel_for(int64_t begin, int64_t end, int64_t grain, kiln_range_fn fn, void* ctx);
int kiln_get_num_threads(void);
// Runs kiln_parallel_for on the OpenMP pool of an already loaded libgomp (PyTorch's) instead of
// kiln's own threads, so the two never fight over the cores: PyTorch's OpenMP workers spin after
// each eager op and would otherwise steal the core kiln's worker needs. `libgomp_path` must name a
// library the process has loaded already (it is opened with RTLD_NOLOAD). Returns 1 on success.
int kiln_share_openmp_pool(const char* libgomp_path);
void kiln_set_num_threads(int n);  // n <= 0 means "the hardware's core count"

// ---- target --------------------------------------------------------------------------------------
// ISA levels, each a superset of the one before. The runtime's kernels are built once per level (in
// libkiln_kernels_<level>.so beside this library) and generated code is compiled for one level; a
// process uses the best level its CPU and OS run unless KILN_ISA names another (baseline, avx2,
// avx512, avx512_amx; a level above the CPU's is refused with a warning and the CPU's best is used).
enum {
  KILN_ISA_BASELINE = 0,   // x86-64-v2: SSE4.2, 16 x 128-bit registers
  KILN_ISA_AVX2 = 1,       // x86-64-v3: AVX2 + FMA, 16 x 256-bit
  KILN_ISA_AVX512 = 2,     // x86-64-v4: AVX-512 F/BW/DQ/VL/CD, 32 x 512-bit
  KILN_ISA_AVX512_AMX = 3  // AVX-512 with AMX-BF16 tiles granted by the OS
};
#define KILN_ISA_LEVELS 4
// What every decision about code and kernel parameters reads: the level, its vector geometry and
// the caches and cores of this machine.
typedef struct kiln_target {
  int isa;               // the level in use
  int detected_isa;      // the best level this CPU and OS run
  int forced;            // 1 when KILN_ISA chose `isa`
  int vector_bytes;      // 16, 32 or 64
  int vector_registers;  // architectural vector registers: 16 or 32
  int64_t l1d_bytes;     // per core
  int l1d_ways;
  int64_t l2_bytes;  // per core
  int64_t l3_bytes;  // as the OS reports it (shared)
  int cores;         // online CPUs
  char cpu[64];      // the CPU's brand string
} kiln_target;
// The process's target: detected once, KILN_ISA applied.
const kiln_target* kiln_get_target(void);
// The target at level `isa` on this machine (same caches and cores). Returns 0 when `isa` is not a
// level or this CPU cannot run it, 1 otherwise.
int kiln_target_for(int isa, kiln_target* out);
const char* kiln_isa_name(int isa);        // "baseline", "avx2", "avx512", "avx512_amx"
int kiln_isa_from_name(const char* name);  // -1 for an unknown name

// ---- GEMM ----------------------------------------------------------------------------------------
// For each b in [0, batch): C_b = alpha * A_b @ B_b + beta * C_b, with A_b (m x k), B_b (k x n),
// C_b (m x n). Every operand has a batch stride, a row stride and a column stride in elements, so
// transposed and broadcast (stride 0) operands need no copy. beta == 0 never reads C (NaN-safe).
// bf16_planes (float only) lets the product use AMX where the CPU has it, each float split exactly
// into that many bfloat16 planes: 2 keeps about 16 significand bits of each operand (PyTorch's
// "high" float32 matmul precision), 1 rounds operands to bfloat16 ("medium"), 3 keeps float
// accuracy; 0 means float FMA kernels only ("highest"). Inputs the split cannot hold exactly
// (inf, NaN, subnormals) fall back to the FMA kernels.
// rows_done (may be null) is an epilogue over rows of C, numbered b * m + i: the GEMM may call
// rows_done(rows_ctx, r0, r1) from its worker threads as soon as rows [r0, r1) of C are final, while
// it computes others, so the epilogue finds them in cache. Returns 1 when it did so for every row
// (each exactly once), 0 when it never called it (the caller then runs the epilogue itself).
typedef int kiln_gemm_f32_fn(int64_t batch, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t a_bs,
                             int64_t a_rs, int64_t a_cs, const float* b, int64_t b_bs, int64_t b_rs, int64_t b_cs,
                             float beta, float* c, int64_t c_bs, int64_t c_rs, int64_t c_cs, int bf16_planes,
                             kiln_range_fn rows_done, void* rows_ctx);
typedef int kiln_gemm_f64_fn(int64_t batch, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                             int64_t a_bs, int64_t a_rs, int64_t a_cs, const double* b, int64_t b_bs, int64_t b_rs,
                             int64_t b_cs, double beta, double* c, int64_t c_bs, int64_t c_rs, int64_t c_cs,
                             kiln_range_fn rows_done, void* rows_ctx);
// Sibling products sharing A, in one call: C_p = A B_p for p < parts (the Q, K and V projections of
// one input). Every B_p is k x n with strides (b_rs, b_cs), every C_p m x n with (c_rs, c_cs). Each
// sliver of A is read once for all parts' columns, and the threads wake once. Results are those of
// `parts` kiln_gemm_f32 calls; rows_done as there (a row is final once it is final in every part).
typedef int kiln_gemm_group_f32_fn(int64_t parts, int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs,
                                   int64_t a_cs, const float* const* b, int64_t b_rs, int64_t b_cs, float* const* c,
                                   int64_t c_rs, int64_t c_cs, int bf16_planes, kiln_range_fn rows_done,
                                   void* rows_ctx);
typedef int kiln_gemm_group_f64_fn(int64_t parts, int64_t m, int64_t n, int64_t k, const double* a, int64_t a_rs,
                                   int64_t a_cs, const double* const* b, int64_t b_rs, int64_t b_cs, double* const* c,
                                   int64_t c_rs, int64_t c_cs, kiln_range_fn rows_done, void* rows_ctx);
// Sibling products sharing B, in one call: C_p = A_p B for p < parts (the weight gradients of the Q,
// K and V projections, all against the same input). Every A_p is m x k with strides (a_rs, a_cs),
// every C_p m x n with (c_rs, c_cs). B is packed once for all parts' rows. Results are those of
// `parts` kiln_gemm calls.
typedef void kiln_gemm_shared_b_f32_fn(int64_t parts, int64_t m, int64_t n, int64_t k, const float* const* a,
                                       int64_t a_rs, int64_t a_cs, const float* b, int64_t b_rs, int64_t b_cs,
                                       float* const* c, int64_t c_rs, int64_t c_cs, int bf16_planes);
typedef void kiln_gemm_shared_b_f64_fn(int64_t parts, int64_t m, int64_t n, int64_t k, const double* const* a,
                                       int64_t a_rs, int64_t a_cs, const double* b, int64_t b_rs, int64_t b_cs,
                                       double* const* c, int64_t c_rs, int64_t c_cs);
// 1 when float GEMMs with bf16_planes > 0 can run on AMX at this level (the CPU has it, the kernel
// grants it, KILN_GEMM_AMX is not 0); 0 when they run on the FMA kernels.
typedef int kiln_gemm_has_amx_fn(void);

// ---- attention -----------------------------------------------------------------------------------
// Fused attention over [b1, b2, s, d] operands: out = softmax(scale * q kᵀ, causal: key j visible to
// query i iff j <= i) v, computed by blocks without the sq x sk matrix, and lse = the log-sum-exp of
// each row of scale * q kᵀ (natural log, the convention of ATen's flash kernels). shape = {b1, b2, sq,
// sk, d, dv}; each *st is an operand's element strides {b1, b2, row, column} (lse: {b1, b2, row}).
// The backward takes the forward's out and lse and writes dq, dk, dv. A query row with no visible key
// gives NaN (as eager's softmax of an all -inf row) and lse -inf.
typedef void kiln_attention_fwd_f32_fn(const int64_t* shape, int causal, float scale, const float* q,
                                       const int64_t* qst, const float* k, const int64_t* kst, const float* v,
                                       const int64_t* vst, float* out, const int64_t* ost, float* lse,
                                       const int64_t* lst);
typedef void kiln_attention_fwd_f64_fn(const int64_t* shape, int causal, double scale, const double* q,
                                       const int64_t* qst, const double* k, const int64_t* kst, const double* v,
                                       const int64_t* vst, double* out, const int64_t* ost, double* lse,
                                       const int64_t* lst);
typedef void kiln_attention_bwd_f32_fn(const int64_t* shape, int causal, float scale, const float* dout,
                                       const int64_t* gst, const float* q, const int64_t* qst, const float* k,
                                       const int64_t* kst, const float* v, const int64_t* vst, const float* out,
                                       const int64_t* ost, const float* lse, const int64_t* lst, float* dq,
                                       const int64_t* dqst, float* dk, const int64_t* dkst, float* dv,
                                       const int64_t* dvst);
typedef void kiln_attention_bwd_f64_fn(const int64_t* shape, int causal, double scale, const double* dout,
                                       const int64_t* gst, const double* q, const int64_t* qst, const double* k,
                                       const int64_t* kst, const double* v, const int64_t* vst, const double* out,
                                       const int64_t* ost, const double* lse, const int64_t* lst, double* dq,
                                       const int64_t* dqst, double* dk, const int64_t* dkst, double* dv,
                                       const int64_t* dvst);

// ---- the kernels of one ISA level --------------------------------------------------------------------
// Generated code calls the kernels of the level it was compiled for through this table.
typedef struct kiln_kernels {
  int isa;
  kiln_gemm_f32_fn* gemm_f32;
  kiln_gemm_f64_fn* gemm_f64;
  kiln_gemm_group_f32_fn* gemm_group_f32;
  kiln_gemm_group_f64_fn* gemm_group_f64;
  kiln_gemm_shared_b_f32_fn* gemm_shared_b_f32;
  kiln_gemm_shared_b_f64_fn* gemm_shared_b_f64;
  kiln_gemm_has_amx_fn* gemm_has_amx;
  kiln_attention_fwd_f32_fn* attention_fwd_f32;
  kiln_attention_fwd_f64_fn* attention_fwd_f64;
  kiln_attention_bwd_f32_fn* attention_bwd_f32;
  kiln_attention_bwd_f64_fn* attention_bwd_f64;
} kiln_kernels;
// The kernels of level `isa`, loaded on first use. NULL when this CPU cannot run the level or its
// library cannot be loaded (kiln_last_error() says why).
const kiln_kernels* kiln_kernels_for(int isa);

// The same kernels at the process's level (kiln_get_target()->isa).
kiln_gemm_f32_fn kiln_gemm_f32;
kiln_gemm_f64_fn kiln_gemm_f64;
kiln_gemm_group_f32_fn kiln_gemm_group_f32;
kiln_gemm_group_f64_fn kiln_gemm_group_f64;
kiln_gemm_shared_b_f32_fn kiln_gemm_shared_b_f32;
kiln_gemm_shared_b_f64_fn kiln_gemm_shared_b_f64;
kiln_gemm_has_amx_fn kiln_gemm_has_amx;
kiln_attention_fwd_f32_fn kiln_attention_fwd_f32;
kiln_attention_fwd_f64_fn kiln_attention_fwd_f64;
kiln_attention_bwd_f32_fn kiln_attention_bwd_f32;
kiln_attention_bwd_f64_fn kiln_attention_bwd_f64;

// ---- scatter -------------------------------------------------------------------------------------
// out[rows x d] (row stride out_rs, contiguous columns) = 0, then for i in [0, n):
//   if idx[i] != padding_idx: out[idx[i], :] += src[i * src_rs : i * src_rs + d]
// Indices are int64 (idx_is_i64 != 0) or int32. Deterministic: each thread owns a column range and
// adds rows in index order, exactly as a sequential loop would. Out-of-range indices are skipped
// and counted; the return value is that count (the caller raises).
int64_t kiln_index_add_rows_f32(float* out, int64_t rows, int64_t d, int64_t out_rs, const void* idx, int idx_is_i64,
                                int64_t n, const float* src, int64_t src_rs, int64_t padding_idx);
int64_t kiln_index_add_rows_f64(double* out, int64_t rows, int64_t d, int64_t out_rs, const void* idx, int idx_is_i64,
                                int64_t n, const double* src, int64_t src_rs, int64_t padding_idx);

// ---- errors --------------------------------------------------------------------------------------
// Generated code reports a failure (an index out of range, say) by returning a non-zero status from
// its entry function after calling this with a message; the host reads it with kiln_last_error().
void kiln_set_error(const char* message);
const char* kiln_last_error(void);

#ifdef __cplusplus
}
#endif
