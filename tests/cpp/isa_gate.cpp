// isa_gate.cpp — runs a test program built for one ISA level only where this CPU runs that level:
//   kiln_isa_gate <level> <program> [args...]
// exits 77 (ctest's SKIP_RETURN_CODE) where it cannot, so a binary compiled with -march=x86-64-v4
// never starts on an AVX2 machine (it could fault before its first test).
#include <unistd.h>

#include <cstdio>

#include "kiln/runtime/kiln_runtime.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: kiln_isa_gate <level> <program> [args...]\n");
    return 2;
  }
  const int level = kiln_isa_from_name(argv[1]);
  if (level < 0) {
    std::fprintf(stderr, "kiln_isa_gate: %s is not a level\n", argv[1]);
    return 2;
  }
  kiln_target t;
  if (!kiln_target_for(level, &t)) {
    std::printf("skipped: this CPU cannot run %s (its best is %s)\n", argv[1],
                kiln_isa_name(kiln_get_target()->detected_isa));
    return 77;
  }
  execv(argv[2], argv + 2);
  std::perror("kiln_isa_gate: exec");
  return 2;
}
