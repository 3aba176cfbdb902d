// target.h — the machine code is generated for: ISA level, vector geometry, caches and cores.
//
// One description that every code-generation decision reads (vector lanes, reduction lanes, the
// compiler's -march, which level's runtime kernels the code calls) and that names the cache entry.
// It is the runtime's own detection (kiln_get_target in kiln_runtime.h) at a chosen level.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln {

struct Target {
  int isa = 0;           // a KILN_ISA_* level of kiln_runtime.h
  int detected_isa = 0;  // the best level this CPU runs
  int vector_bytes = 16;
  int vector_registers = 16;
  int64_t l1d_bytes = 0, l2_bytes = 0, l3_bytes = 0;
  int cores = 1;
  std::string cpu;

  // The process's target: the CPU's best level, or the one KILN_ISA forces.
  static Target host();
  // This machine at the named level ("native" or "" for host()); a UserError when the name is not a
  // level or this CPU cannot run it.
  static Target named(const std::string& isa);

  std::string isa_name() const;
  // Independent accumulators of a float reduction: at least one full vector, and at least 16 so
  // narrower vectors still keep several add chains in flight. 16 on every level today, so sums
  // add in the same order whichever level runs them.
  int reduction_lanes() const;
  // Outer indices a column kernel runs in vector lanes (column_kernels.cpp): four vectors of
  // floats, at least 64.
  int column_lanes() const;
  // The C++ compiler's target options: the CPU itself (-march=native) at its best level, else the
  // level's x86-64 micro-architecture level tuned for this CPU.
  std::vector<std::string> compiler_flags() const;
  // Everything above, one field per line: part of every cache key.
  std::string describe() const;
};

}  // namespace kiln
