// reduction_schedules.cpp — how each reduction stage combines its elements, decided from the op, its
// dtype, the kernel's lanes and the target, so the emitter only prints it.
//
// Float sums keep eager's accuracy by adding in blocks (a long row's error then grows like a blocked
// pairwise sum's, not a running sum's); every other reduction is exact in any order, or (arg
// reductions) needs the first best position, which a sequential loop keeps.
#include "kiln/loops/reduction_schedules.h"

namespace kiln {
namespace {

constexpr int64_t kSumBlock = 4096;                // InnerLanes: elements per partial sum
constexpr int64_t kLanePart = 256, kLaneMid = 64;  // OuterLanes: elements per partial, partials per middle sum

ReduceSchedule::Combine combine_of(Op op) {
  using C = ReduceSchedule::Combine;
  switch (op) {
    case Op::sum: return C::Add;
    case Op::prod: return C::Mul;
    case Op::amax: return C::Max;
    case Op::amin: return C::Min;
    case Op::argmax: return C::ArgMax;
    case Op::argmin: return C::ArgMin;
    default: throw InternalError(str_cat("no reduction schedule for ", op_name(op)));
  }
}

}  // namespace

void plan_reduction_schedules(const Graph& g, KernelPlan& plan, const Target& target) {
  using K = ReduceSchedule::Kind;
  for (Kernel& k : plan.kernels)
    for (Stage& s : k.stages) {
      if (!s.reduction) continue;
      const Node& n = *g.producer(s.value);
      ReduceSchedule r;
      r.combine = combine_of(n.op);
      const bool arg = r.combine == ReduceSchedule::Combine::ArgMax || r.combine == ReduceSchedule::Combine::ArgMin;
      const bool float_sum = n.op == Op::sum && is_floating(g.type(s.value).dtype);
      if (k.lanes > 0) {
        KILN_CHECK(!arg, "lane kernels take no arg reductions");
        r.kind = K::OuterLanes;
        if (float_sum) r.part = kLanePart, r.mid = kLaneMid;
      } else if (arg || s.inner_dims.empty()) {
        r.kind = K::Sequential;
      } else {
        r.kind = K::InnerLanes;
        r.lanes = target.reduction_lanes();
        if (float_sum) r.block = kSumBlock;
      }
      s.schedule = r;
    }
}

std::string describe_schedule(const ReduceSchedule& r) {
  using K = ReduceSchedule::Kind;
  static const char* const kCombine[] = {"add", "mul", "max", "min", "argmax", "argmin"};
  const std::string c = kCombine[static_cast<int>(r.combine)];
  switch (r.kind) {
    case K::None: return "undecided";
    case K::Sequential: return c + " sequential";
    case K::InnerLanes:
      return str_cat(c, " inner-lanes ", r.lanes, r.block ? str_cat(" blocks of ", r.block) : std::string());
    case K::OuterLanes:
      return str_cat(c, " outer-lanes", r.part ? str_cat(" partials of ", r.part, " x ", r.mid) : std::string());
  }
  return "?";
}

}  // namespace kiln
