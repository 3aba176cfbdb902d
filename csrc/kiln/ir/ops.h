// ops.h — every kiln IR operation, declared once with the properties passes and codegen rely on.
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

namespace kiln {

enum class OpKind : uint8_t {
  Pointwise,  // elementwise over inputs of the result's shape (broadcasting is explicit: expand)
  Source,     // produces values from attributes and indices only (full, iota)
  View,       // reinterprets its input's elements: no arithmetic, only index remapping
  Reduction,  // reduces `dims` of its input
  Gather,     // elementwise with one data-dependent index (embedding rows) or piecewise inputs (cat)
  Extern,     // a call into a runtime routine with its own loops (GEMM, scatter-add)
};

// X(name, kind, arity, commutative, fn) — arity -1 means variadic. `fn` is the C++ spelling used by
// generated code for pointwise ops (a function in the generated prelude, or empty).
// clang-format off: one op per line, aligned
#define KILN_FOR_EACH_OP(X)                        \
  /* pointwise unary */                            \
  X(neg, Pointwise, 1, false)                      \
  X(abs, Pointwise, 1, false)                      \
  X(exp, Pointwise, 1, false)                      \
  X(exp2, Pointwise, 1, false)                     \
  X(expm1, Pointwise, 1, false)                    \
  X(log, Pointwise, 1, false)                      \
  X(log2, Pointwise, 1, false)                     \
  X(log1p, Pointwise, 1, false)                    \
  X(sqrt, Pointwise, 1, false)                     \
  X(rsqrt, Pointwise, 1, false)                    \
  X(reciprocal, Pointwise, 1, false)               \
  X(sin, Pointwise, 1, false)                      \
  X(cos, Pointwise, 1, false)                      \
  X(tan, Pointwise, 1, false)                      \
  X(tanh, Pointwise, 1, false)                     \
  X(sigmoid, Pointwise, 1, false)                  \
  X(erf, Pointwise, 1, false)                      \
  X(relu, Pointwise, 1, false)                     \
  X(silu, Pointwise, 1, false)                     \
  X(gelu, Pointwise, 1, false)                     \
  X(gelu_tanh, Pointwise, 1, false)                \
  X(floor, Pointwise, 1, false)                    \
  X(ceil, Pointwise, 1, false)                     \
  X(round, Pointwise, 1, false)                    \
  X(trunc, Pointwise, 1, false)                    \
  X(sign, Pointwise, 1, false)                     \
  X(isnan, Pointwise, 1, false)                    \
  X(logical_not, Pointwise, 1, false)              \
  X(bitwise_not, Pointwise, 1, false)              \
  X(cast, Pointwise, 1, false)                     \
  /* pointwise binary */                           \
  X(add, Pointwise, 2, true)                       \
  X(sub, Pointwise, 2, false)                      \
  X(mul, Pointwise, 2, true)                       \
  X(div, Pointwise, 2, false)                      \
  X(floordiv, Pointwise, 2, false)                 \
  X(truncdiv, Pointwise, 2, false)                 \
  X(remainder, Pointwise, 2, false)                \
  X(fmod, Pointwise, 2, false)                     \
  X(pow, Pointwise, 2, false)                      \
  X(maximum, Pointwise, 2, true)                   \
  X(minimum, Pointwise, 2, true)                   \
  X(atan2, Pointwise, 2, false)                    \
  X(eq, Pointwise, 2, true)                        \
  X(ne, Pointwise, 2, true)                        \
  X(lt, Pointwise, 2, false)                       \
  X(le, Pointwise, 2, false)                       \
  X(gt, Pointwise, 2, false)                       \
  X(ge, Pointwise, 2, false)                       \
  X(logical_and, Pointwise, 2, true)               \
  X(logical_or, Pointwise, 2, true)                \
  X(logical_xor, Pointwise, 2, true)               \
  X(bitwise_and, Pointwise, 2, true)               \
  X(bitwise_or, Pointwise, 2, true)                \
  X(bitwise_xor, Pointwise, 2, true)               \
  /* pointwise ternary */                          \
  X(where, Pointwise, 3, false)                    \
  X(fma, Pointwise, 3, false) /* a*b+c, one rounding */ \
  /* sources: result type gives the shape */      \
  X(full, Source, 0, false)   /* {value} */        \
  X(iota, Source, 0, false)   /* {dim,start,step} */ \
  /* views */                                      \
  X(permute, View, 1, false)  /* {dims} */         \
  X(expand, View, 1, false)   /* result sizes */   \
  X(reshape, View, 1, false)  /* result sizes */   \
  X(slice, View, 1, false)    /* {dim,start,step} */ \
  X(select, View, 1, false)   /* {dim,index} */    \
  X(as_strided, View, 1, false) /* {strides,offset} over the input's row-major order */ \
  /* reductions: {dims,keepdim} */                 \
  X(sum, Reduction, 1, false)                      \
  X(prod, Reduction, 1, false)                     \
  X(amax, Reduction, 1, false)                     \
  X(amin, Reduction, 1, false)                     \
  X(argmax, Reduction, 1, false)                   \
  X(argmin, Reduction, 1, false)                   \
  /* gathers */                                    \
  X(index_rows, Gather, 2, false) /* out[i.., j..] = x[idx[i..], j..] */ \
  X(cat, Gather, -1, false)       /* {dim} */      \
  X(pad, Gather, 1, false)        /* {pads,value}: constant_pad_nd */ \
  X(slice_scatter, Gather, 2, false) /* {dim,start,step}: base with a strided slice replaced by src */ \
  /* externs */                                    \
  X(matmul, Extern, 2, false)     /* [B,M,K]x[B,K,N] or [M,K]x[K,N] */ \
  X(index_add_rows, Extern, 2, false) /* {rows}: zeros(rows, D).index_add_(0, idx, src) */ \
  /* {causal,scale}: q [..,Sq,D], k [..,Sk,D], v [..,Sk,Dv] -> [..,Sq,Dv+1]: out, then logsumexp */ \
  X(attention, Extern, 3, false)                  \
  /* {causal,scale}: dout, q, k, v, out, lse -> [.., Sq*D + Sk*D + Sk*Dv]: dq, dk, dv flattened */ \
  X(attention_backward, Extern, 6, false)
// clang-format on

enum class Op : uint16_t {
#define KILN_OP_ENUM(name, kind, arity, comm) name,
  KILN_FOR_EACH_OP(KILN_OP_ENUM)
#undef KILN_OP_ENUM
      kNumOps
};

struct OpInfo {
  std::string_view name;
  OpKind kind;
  int arity;  // -1: variadic
  bool commutative;
};

const OpInfo& op_info(Op op);
std::optional<Op> op_from_name(std::string_view name);
inline OpKind op_kind(Op op) { return op_info(op).kind; }
inline std::string_view op_name(Op op) { return op_info(op).name; }
bool is_comparison(Op op);  // eq ne lt le gt ge isnan logical_*: results are bool

}  // namespace kiln
