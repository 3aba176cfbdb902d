// target.cpp — the machine kiln runs on: ISA level (CPUID and the OS's saved register state), vector
// geometry, caches and cores, detected once per process; KILN_ISA forces a lower level.
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kiln/runtime/kiln_runtime.h"

namespace {

constexpr const char* kNames[KILN_ISA_LEVELS] = {"baseline", "avx2", "avx512", "avx512_amx"};

bool bit(unsigned word, int b) { return (word >> b) & 1u; }

// The register state the OS saves on a context switch (XCR0): a CPU feature is usable only when the
// OS saves the registers it uses.
uint64_t xcr0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}

// Linux hands out the AMX tile data state only on request (arch_prctl), once per process.
bool os_grants_amx() {
  constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
}

int detect_isa() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return -1;
  const bool v2 = bit(c, 0) && bit(c, 9) && bit(c, 13) && bit(c, 19) && bit(c, 20) && bit(c, 23);  // SSE3..POPCNT
  if (!v2) return -1;
  const bool osxsave = bit(c, 27), avx = bit(c, 28), fma = bit(c, 12), f16c = bit(c, 29), movbe = bit(c, 22);
  const uint64_t xcr = osxsave ? xcr0() : 0;
  const bool ymm_state = (xcr & 0x6) == 0x6;           // SSE + AVX state
  const bool zmm_state = (xcr & 0xE6) == 0xE6;         // + opmask, ZMM_Hi256, Hi16_ZMM
  const bool tile_state = (xcr & 0x60000) == 0x60000;  // XTILECFG + XTILEDATA
  unsigned a7 = 0, b7 = 0, c7 = 0, d7 = 0;
  __get_cpuid_count(7, 0, &a7, &b7, &c7, &d7);
  unsigned ae = 0, be = 0, ce = 0, de = 0;
  __get_cpuid(0x80000001, &ae, &be, &ce, &de);
  const bool lzcnt = bit(ce, 5);
  const bool avx2 = bit(b7, 5), bmi1 = bit(b7, 3), bmi2 = bit(b7, 8);
  const bool v3 = avx && avx2 && fma && f16c && movbe && bmi1 && bmi2 && lzcnt && ymm_state;
  if (!v3) return KILN_ISA_BASELINE;
  const bool v4 =
      bit(b7, 16) && bit(b7, 17) && bit(b7, 28) && bit(b7, 30) && bit(b7, 31) && zmm_state;  // F DQ CD BW VL
  if (!v4) return KILN_ISA_AVX2;
  const bool amx = bit(d7, 22) && bit(d7, 24) && tile_state;  // AMX-BF16, AMX-TILE
  return amx && os_grants_amx() ? KILN_ISA_AVX512_AMX : KILN_ISA_AVX512;
}

int64_t sysconf_or(int name, int64_t fallback) {
  const long v = sysconf(name);
  return v > 0 ? int64_t(v) : fallback;
}

void cpu_brand(char out[64]) {
  unsigned regs[12] = {};
  unsigned max_ext = __get_cpuid_max(0x80000000, nullptr);
  if (max_ext >= 0x80000004) {
    for (unsigned i = 0; i < 3; ++i)
      __get_cpuid(0x80000002 + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
  }
  char brand[49] = {};
  std::memcpy(brand, regs, 48);
  const char* s = brand;
  while (*s == ' ') ++s;
  std::snprintf(out, 64, "%s", *s ? s : "unknown x86-64");
}

void describe(int isa, int detected, kiln_target& t) {
  t.isa = isa;
  t.detected_isa = detected;
  t.vector_bytes = isa >= KILN_ISA_AVX512 ? 64 : isa == KILN_ISA_AVX2 ? 32 : 16;
  t.vector_registers = isa >= KILN_ISA_AVX512 ? 32 : 16;
}

// KILN_CPU_CAP (for tests): behave as a CPU whose best level is at most this one, so the paths for
// levels a CPU cannot run can be exercised on a machine that runs them all.
int capped(int detected) {
  const char* env = std::getenv("KILN_CPU_CAP");
  const int cap = env && *env ? kiln_isa_from_name(env) : -1;
  return cap >= 0 && cap < detected ? cap : detected;
}

kiln_target detect() {
  kiln_target t{};
  const int found = detect_isa();
  if (found < 0) {
    std::fputs("kiln runtime: this CPU lacks x86-64-v2 (SSE4.2, POPCNT), the least kiln's kernels need\n", stderr);
    std::abort();
  }
  const int detected = capped(found);
  int isa = detected;
  if (const char* env = std::getenv("KILN_ISA"); env && *env && std::strcmp(env, "native") != 0) {
    const int asked = kiln_isa_from_name(env);
    if (asked < 0) {
      std::fprintf(stderr, "kiln: KILN_ISA=%s is not a level (baseline, avx2, avx512, avx512_amx); using %s\n", env,
                   kNames[detected]);
    } else if (asked > detected) {
      std::fprintf(stderr, "kiln: KILN_ISA=%s, but this CPU runs at most %s; using %s\n", env, kNames[detected],
                   kNames[detected]);
    } else {
      isa = asked;
      t.forced = 1;
    }
  }
  describe(isa, detected, t);
  // glibc reads these from CPUID's cache leaves; the fallbacks are a common desktop core's.
  t.l1d_bytes = sysconf_or(_SC_LEVEL1_DCACHE_SIZE, 32 << 10);
  t.l1d_ways = static_cast<int>(sysconf_or(_SC_LEVEL1_DCACHE_ASSOC, 8));
  t.l2_bytes = sysconf_or(_SC_LEVEL2_CACHE_SIZE, 512 << 10);
  t.l3_bytes = sysconf_or(_SC_LEVEL3_CACHE_SIZE, 8 << 20);
  t.cores = static_cast<int>(sysconf_or(_SC_NPROCESSORS_ONLN, 1));
  cpu_brand(t.cpu);
  return t;
}

const kiln_target& process_target() {
  static const kiln_target t = detect();
  return t;
}

}  // namespace

extern "C" {

const kiln_target* kiln_get_target(void) { return &process_target(); }

int kiln_target_for(int isa, kiln_target* out) {
  const kiln_target& t = process_target();
  if (isa < 0 || isa >= KILN_ISA_LEVELS || isa > t.detected_isa) return 0;
  *out = t;
  out->forced = isa != t.detected_isa;
  describe(isa, t.detected_isa, *out);
  return 1;
}

const char* kiln_isa_name(int isa) { return isa >= 0 && isa < KILN_ISA_LEVELS ? kNames[isa] : "unknown"; }

int kiln_isa_from_name(const char* name) {
  if (!name) return -1;
  for (int i = 0; i < KILN_ISA_LEVELS; ++i)
    if (std::strcmp(name, kNames[i]) == 0) return i;
  return -1;
}

}  // extern "C"
