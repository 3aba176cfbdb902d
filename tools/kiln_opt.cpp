// kiln_opt.cpp — kiln-opt: read text IR, run named passes, print the result (golden tests, debugging).
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "kiln/ir/graph.h"
#include "kiln/passes/pass_registry.h"
#include "kiln/passes/pipeline.h"
#include "kiln/support/error.h"
#if __has_include("kiln/loops/fusion.h")
#include "kiln/loops/fusion.h"
#define KILN_OPT_HAS_FUSION 1
#endif

namespace {

void usage(std::ostream& os) {
  os << "usage: kiln-opt [--pass=NAME]... [--verify-each] [--print-kernels] [FILE|-]\n"
        "Reads kiln IR text (from stdin for '-' or no FILE), runs the passes in order, prints the graph.\n"
        "  --pass=NAME      run pass NAME (repeatable)\n"
        "  --verify-each    verify the input and the graph after every pass\n"
        "  --print-kernels  print the kernels the graph fuses into instead of the graph\n"
        "passes:\n";
  for (const auto& p : kiln::all_passes()) os << "  " << p.name << std::string(16 - p.name.size(), ' ') << p.summary << "\n";
}

std::string read_all(std::istream& in) { return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()}; }

int run(int argc, char** argv) {
  kiln::PipelineOptions options;
  options.passes.clear();
  bool print_kernels = false;
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

  kiln::Graph g;
  try {
    g = kiln::parse_graph(text);
  } catch (const kiln::UserError& e) {
    std::cerr << where << ":" << e.what() << "\n";  // parse errors start with line:col
    return 1;
  }
  g = kiln::run_graph_pipeline(g, options);
  if (print_kernels) {
#ifdef KILN_OPT_HAS_FUSION
    std::cout << kiln::describe_kernels(g);
#else
    std::cerr << "kiln-opt: --print-kernels needs kiln/loops/fusion.h, which this build does not have\n";
    return 1;
#endif
  } else {
    std::cout << kiln::print_graph(g);
  }
  return 0;
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
