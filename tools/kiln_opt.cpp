// kiln_opt.cpp — kiln-opt: read text IR, run named passes or any prefix of the lowering, print the result
// (golden tests, debugging).
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "kiln/driver/lower.h"
#include "kiln/ir/graph.h"
#include "kiln/loops/plan_steps.h"
#include "kiln/passes/pass_registry.h"
#include "kiln/passes/pipeline.h"
#include "kiln/support/error.h"

namespace {

void usage(std::ostream& os) {
  os << "usage: kiln-opt [--pass=NAME]... [--stop-after=STEP | --print-plan | --emit=cpp | --print-kernels]\n"
        "                [--isa=LEVEL] [--verify-each] [FILE|-]\n"
        "Reads kiln IR text (from stdin for '-' or no FILE), runs the passes in order, prints the graph; or\n"
        "lowers it (driver/lower.cpp) up to a step and prints that step's result.\n"
        "  --pass=NAME        run graph pass NAME (repeatable), before any lowering\n"
        "  --stop-after=STEP  lower through STEP and print its result (IR, plan or C++)\n"
        "  --print-plan       lower through every planning step and print the plan\n"
        "  --emit=cpp         lower all the way and print the generated C++\n"
        "  --print-kernels    the kernels and extern calls, one per line\n"
        "  --isa=LEVEL        the target's ISA level (baseline, avx2, avx512, avx512_amx; default: this CPU's)\n"
        "  --verify-each      verify the IR after every pass and the plan after every planning step\n"
        "  --split-input-file treat each '// -----' separated chunk as its own input; outputs are\n"
        "                     separated the same way (MLIR's convention)\n"
        "graph passes:\n";
  for (const auto& p : kiln::all_passes())
    os << "  " << p.name << std::string(16 - p.name.size(), ' ') << p.summary << "\n";
  os << "lowering steps, in order: ";
  for (const auto& s : kiln::lowering_steps()) os << s << " ";
  os << "\nplanning steps:\n";
  for (const auto& p : kiln::all_plan_steps())
    os << "  " << p.name << std::string(16 - p.name.size(), ' ') << p.summary << "\n";
}

std::string read_all(std::istream& in) {
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

int run(int argc, char** argv) {
  kiln::PipelineOptions options;
  options.passes.clear();
  bool print_kernels = false;
  std::string stop_after, isa;
  bool split = false;
  std::string file = "-";
  bool have_file = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--pass=", 0) == 0) {
      options.passes.push_back(kiln::find_pass(a.substr(7)).name);  // a typo fails before reading input
    } else if (a == "--verify-each") {
      options.verify_each = true;
    } else if (a == "--print-kernels") {
      print_kernels = true;
    } else if (a.rfind("--stop-after=", 0) == 0) {
      stop_after = a.substr(13);
    } else if (a == "--print-plan") {
      stop_after = kiln::lowering_steps()[kiln::lowering_steps().size() - 2];  // the last planning step
    } else if (a == "--emit=cpp") {
      stop_after = "emit-cpp";
    } else if (a.rfind("--isa=", 0) == 0) {
      isa = a.substr(6);
    } else if (a == "--split-input-file") {
      split = true;
    } else if (a == "-h" || a == "--help") {
      usage(std::cout);
      return 0;
    } else if ((a.empty() || a[0] != '-' || a == "-") && !have_file) {
      file = a;
      have_file = true;
    } else {
      std::cerr << "kiln-opt: unexpected argument '" << a << "'\n";
      usage(std::cerr);
      return 1;
    }
  }

  std::string text;
  if (file == "-") {
    text = read_all(std::cin);
  } else {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      std::cerr << "kiln-opt: cannot open '" << file << "'\n";
      return 1;
    }
    text = read_all(in);
  }
  std::string where = file == "-" ? "<stdin>" : file;
  const kiln::Target target = kiln::Target::named(isa);

  // One graph in, its result out; a chunk's line numbers count from the file's start, so errors
  // point at the file.
  auto process = [&](const std::string& chunk) -> int {
    kiln::Graph g;
    try {
      g = kiln::parse_graph(chunk);
    } catch (const kiln::UserError& e) {
      std::cerr << where << ":" << e.what() << "\n";  // parse errors start with line:col
      return 1;
    }
    g = kiln::run_graph_pipeline(g, options);
    if (print_kernels) {
      std::cout << kiln::describe_kernels(g, target);
    } else if (!stop_after.empty()) {
      kiln::LowerOptions lo;
      lo.target = target;
      lo.alias_ok.assign(g.outputs().size(), true);
      lo.verify = options.verify_each;
      lo.stop_after = stop_after;
      std::string last_text;
      lo.dump = [&](int, const std::string&, const std::string&, const std::string& t) { last_text = t; };
      kiln::lower(g, lo);
      std::cout << last_text;
    } else {
      std::cout << kiln::print_graph(g);
    }
    return 0;
  };
  if (!split) return process(text);
  std::istringstream lines(text);
  std::string chunk, line;
  int status = 0;
  bool first = true;
  auto flush = [&] {
    if (!first) std::cout << "// -----\n";
    first = false;
    status |= process(chunk);
  };
  for (int n = 0; std::getline(lines, line); ++n) {
    if (line.rfind("// -----", 0) == 0) {
      flush();
      chunk = std::string(static_cast<size_t>(n + 1), '\n');  // keep line numbers
      continue;
    }
    chunk += line + "\n";
  }
  flush();
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const kiln::UserError& e) {
    std::cerr << "kiln-opt: error: " << e.what() << "\n";
  } catch (const kiln::InternalError& e) {
    std::cerr << "kiln-opt: internal error: " << e.what() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "kiln-opt: error: " << e.what() << "\n";
  }
  return 1;
}
