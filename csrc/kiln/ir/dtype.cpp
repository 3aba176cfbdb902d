// dtype.cpp — names, C types and promotion of kiln's element types.
#include "kiln/ir/dtype.h"

#include "kiln/support/error.h"

namespace kiln {

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::Bool: return "bool";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
    case DType::F32: return "f32";
    case DType::F64: return "f64";
  }
  throw InternalError("bad dtype");
}

std::string_view dtype_c_type(DType t) {
  switch (t) {
    case DType::Bool: return "bool";
    case DType::I32: return "int32_t";
    case DType::I64: return "int64_t";
    case DType::F32: return "float";
    case DType::F64: return "double";
  }
  throw InternalError("bad dtype");
}

DType dtype_from_name(std::string_view s) {
  for (DType t : {DType::Bool, DType::I32, DType::I64, DType::F32, DType::F64})
    if (dtype_name(t) == s) return t;
  throw UserError(str_cat("unsupported dtype '", s, "' (kiln supports bool, i32, i64, f32, f64)"));
}

int64_t dtype_size(DType t) {
  switch (t) {
    case DType::Bool: return 1;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::F32: return 4;
    case DType::F64: return 8;
  }
  throw InternalError("bad dtype");
}

DType promote(DType a, DType b) {
  // The lattice bool < i32 < i64 < f32 < f64 matches torch.promote_types on these five types.
  return static_cast<uint8_t>(a) > static_cast<uint8_t>(b) ? a : b;
}

}  // namespace kiln
