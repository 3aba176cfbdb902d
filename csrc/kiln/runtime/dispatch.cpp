// dispatch.cpp — loads the kernels built for an ISA level (libkiln_kernels_<level>.so, beside this
// library) and forwards the plain kiln_gemm_* / kiln_attention_* calls to the process's level.
//
// Each level's kernels are a library of their own, compiled with that level's -march, so no inline
// function or template instantiated with AVX-512 instructions can be merged into code a baseline CPU
// runs (the linker keeps one copy of each such function per library, and the libraries bind their
// own copies: everything but the table is hidden).
#include <dlfcn.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "kiln/runtime/kiln_runtime.h"

namespace {

// Which library holds a level's kernels: AVX-512 with and without AMX share one.
const char* library_level(int isa) { return isa == KILN_ISA_AVX512_AMX ? "avx512" : kiln_isa_name(isa); }

std::string this_library_dir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&kiln_kernels_for), &info) == 0 || !info.dli_fname) return ".";
  std::string path = info.dli_fname;
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::atomic<const kiln_kernels*> g_tables[KILN_ISA_LEVELS];
std::mutex g_load_mutex;

const kiln_kernels* load(int isa) {
  std::lock_guard<std::mutex> lock(g_load_mutex);
  if (const kiln_kernels* t = g_tables[isa].load(std::memory_order_acquire)) return t;
  const std::string path = this_library_dir() + "/libkiln_kernels_" + library_level(isa) + ".so";
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* why = dlerror();
    kiln_set_error(("kiln runtime: cannot load " + path + ": " + (why ? why : "unknown error") +
                    " (the installation is incomplete; reinstall kiln)")
                       .c_str());
    return nullptr;
  }
  using TableFn = const kiln_kernels* (*)(int);
  auto table_fn = reinterpret_cast<TableFn>(dlsym(handle, "kiln_isa_kernels"));
  const kiln_kernels* t = table_fn ? table_fn(isa) : nullptr;
  if (!t) {
    kiln_set_error(("kiln runtime: " + path + " has no kernels for " + kiln_isa_name(isa)).c_str());
    return nullptr;
  }
  // The library stays loaded for the life of the process: tables point into it.
  g_tables[isa].store(t, std::memory_order_release);
  return t;
}

// The process's level; the abort is for a broken installation only (no status to return here).
const kiln_kernels& process_kernels() {
  static const kiln_kernels* t = [] {
    const kiln_kernels* k = kiln_kernels_for(kiln_get_target()->isa);
    if (!k) {
      std::fprintf(stderr, "%s\n", kiln_last_error());
      std::abort();
    }
    return k;
  }();
  return *t;
}

}  // namespace

extern "C" {

const kiln_kernels* kiln_kernels_for(int isa) {
  kiln_target t;
  if (!kiln_target_for(isa, &t)) {
    kiln_set_error(("kiln runtime: this CPU cannot run ISA level " + std::string(kiln_isa_name(isa)) +
                    " (its best is " + kiln_isa_name(kiln_get_target()->detected_isa) + ")")
                       .c_str());
    return nullptr;
  }
  if (const kiln_kernels* k = g_tables[isa].load(std::memory_order_acquire)) return k;
  return load(isa);
}

int kiln_gemm_f32(int64_t batch, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t a_bs,
                  int64_t a_rs, int64_t a_cs, const float* b, int64_t b_bs, int64_t b_rs, int64_t b_cs, float beta,
                  float* c, int64_t c_bs, int64_t c_rs, int64_t c_cs, int bf16_planes, kiln_range_fn rows_done,
                  void* rows_ctx) {
  return process_kernels().gemm_f32(batch, m, n, k, alpha, a, a_bs, a_rs, a_cs, b, b_bs, b_rs, b_cs, beta, c, c_bs,
                                    c_rs, c_cs, bf16_planes, rows_done, rows_ctx);
}

int kiln_gemm_f64(int64_t batch, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t a_bs,
                  int64_t a_rs, int64_t a_cs, const double* b, int64_t b_bs, int64_t b_rs, int64_t b_cs, double beta,
                  double* c, int64_t c_bs, int64_t c_rs, int64_t c_cs, kiln_range_fn rows_done, void* rows_ctx) {
  return process_kernels().gemm_f64(batch, m, n, k, alpha, a, a_bs, a_rs, a_cs, b, b_bs, b_rs, b_cs, beta, c, c_bs,
                                    c_rs, c_cs, rows_done, rows_ctx);
}

int kiln_gemm_group_f32(int64_t parts, int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs,
                        const float* const* b, int64_t b_rs, int64_t b_cs, float* const* c, int64_t c_rs, int64_t c_cs,
                        int bf16_planes, kiln_range_fn rows_done, void* rows_ctx) {
  return process_kernels().gemm_group_f32(parts, m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, c_rs, c_cs, bf16_planes,
                                          rows_done, rows_ctx);
}

int kiln_gemm_group_f64(int64_t parts, int64_t m, int64_t n, int64_t k, const double* a, int64_t a_rs, int64_t a_cs,
                        const double* const* b, int64_t b_rs, int64_t b_cs, double* const* c, int64_t c_rs,
                        int64_t c_cs, kiln_range_fn rows_done, void* rows_ctx) {
  return process_kernels().gemm_group_f64(parts, m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, c_rs, c_cs, rows_done,
                                          rows_ctx);
}

void kiln_gemm_shared_b_f32(int64_t parts, int64_t m, int64_t n, int64_t k, const float* const* a, int64_t a_rs,
                            int64_t a_cs, const float* b, int64_t b_rs, int64_t b_cs, float* const* c, int64_t c_rs,
                            int64_t c_cs, int bf16_planes) {
  process_kernels().gemm_shared_b_f32(parts, m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, c_rs, c_cs, bf16_planes);
}

void kiln_gemm_shared_b_f64(int64_t parts, int64_t m, int64_t n, int64_t k, const double* const* a, int64_t a_rs,
                            int64_t a_cs, const double* b, int64_t b_rs, int64_t b_cs, double* const* c, int64_t c_rs,
                            int64_t c_cs) {
  process_kernels().gemm_shared_b_f64(parts, m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, c_rs, c_cs);
}

int kiln_gemm_has_amx(void) { return process_kernels().gemm_has_amx(); }

void kiln_attention_fwd_f32(const int64_t* shape, int causal, float scale, const float* q, const int64_t* qst,
                            const float* k, const int64_t* kst, const float* v, const int64_t* vst, float* out,
                            const int64_t* ost, float* lse, const int64_t* lst) {
  process_kernels().attention_fwd_f32(shape, causal, scale, q, qst, k, kst, v, vst, out, ost, lse, lst);
}

void kiln_attention_fwd_f64(const int64_t* shape, int causal, double scale, const double* q, const int64_t* qst,
                            const double* k, const int64_t* kst, const double* v, const int64_t* vst, double* out,
                            const int64_t* ost, double* lse, const int64_t* lst) {
  process_kernels().attention_fwd_f64(shape, causal, scale, q, qst, k, kst, v, vst, out, ost, lse, lst);
}

void kiln_attention_bwd_f32(const int64_t* shape, int causal, float scale, const float* dout, const int64_t* gst,
                            const float* q, const int64_t* qst, const float* k, const int64_t* kst, const float* v,
                            const int64_t* vst, const float* out, const int64_t* ost, const float* lse,
                            const int64_t* lst, float* dq, const int64_t* dqst, float* dk, const int64_t* dkst,
                            float* dv, const int64_t* dvst) {
  process_kernels().attention_bwd_f32(shape, causal, scale, dout, gst, q, qst, k, kst, v, vst, out, ost, lse, lst, dq,
                                      dqst, dk, dkst, dv, dvst);
}

void kiln_attention_bwd_f64(const int64_t* shape, int causal, double scale, const double* dout, const int64_t* gst,
                            const double* q, const int64_t* qst, const double* k, const int64_t* kst, const double* v,
                            const int64_t* vst, const double* out, const int64_t* ost, const double* lse,
                            const int64_t* lst, double* dq, const int64_t* dqst, double* dk, const int64_t* dkst,
                            double* dv, const int64_t* dvst) {
  process_kernels().attention_bwd_f64(shape, causal, scale, dout, gst, q, qst, k, kst, v, vst, out, ost, lse, lst, dq,
                                      dqst, dk, dkst, dv, dvst);
}

}  // extern "C"
