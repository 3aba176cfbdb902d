// target.cpp — the compiler's view of the runtime's target detection (see target.h).
#include "kiln/target/target.h"

#include <algorithm>

#include "kiln/runtime/kiln_runtime.h"
#include "kiln/support/error.h"

namespace kiln {
namespace {

Target from_runtime(const kiln_target& t) {
  Target r;
  r.isa = t.isa;
  r.detected_isa = t.detected_isa;
  r.vector_bytes = t.vector_bytes;
  r.vector_registers = t.vector_registers;
  r.l1d_bytes = t.l1d_bytes;
  r.l2_bytes = t.l2_bytes;
  r.l3_bytes = t.l3_bytes;
  r.cores = t.cores;
  r.cpu = t.cpu;
  return r;
}

}  // namespace

Target Target::host() { return from_runtime(*kiln_get_target()); }

Target Target::named(const std::string& isa) {
  if (isa.empty() || isa == "native") return host();
  const int level = kiln_isa_from_name(isa.c_str());
  KILN_USER_CHECK(level >= 0, "kiln: isa=", isa, " is not a level (baseline, avx2, avx512, avx512_amx, native)");
  kiln_target t;
  KILN_USER_CHECK(kiln_target_for(level, &t), "kiln: isa=", isa, " cannot run on this CPU (", kiln_get_target()->cpu,
                  "; its best level is ", kiln_isa_name(kiln_get_target()->detected_isa), ")");
  return from_runtime(t);
}

std::string Target::isa_name() const { return kiln_isa_name(isa); }

int Target::reduction_lanes() const { return std::max(16, vector_bytes / 4); }

int Target::column_lanes() const { return std::max(64, 4 * vector_bytes / 4); }

std::vector<std::string> Target::compiler_flags() const {
  if (isa == detected_isa) return {"-march=native"};
  static const char* const kLevels[] = {"-march=x86-64-v2", "-march=x86-64-v3", "-march=x86-64-v4", "-march=x86-64-v4"};
  return {kLevels[isa], "-mtune=native"};
}

std::string Target::describe() const {
  return str_cat("isa: ", isa_name(), "\nvector bytes: ", vector_bytes, "\nvector registers: ", vector_registers,
                 "\nl1d/l2/l3 bytes: ", l1d_bytes, " ", l2_bytes, " ", l3_bytes, "\ncores: ", cores, "\ncpu: ", cpu,
                 "\n");
}

}  // namespace kiln
