// The smallest streaming program with the C++ wrapper (llm.hpp): load a
// model, generate from a prompt, print text as it arrives.
// Usage: stream_cpp MODEL.llm [PROMPT]
#include <cstdio>
#include <iostream>
#include <string_view>

#include "llm.hpp"

int main(int argc, char **argv) {
  if (argc < 2) {
    std::cerr << "usage: " << argv[0] << " MODEL.llm [PROMPT]\n";
    return 2;
  }
  const char *prompt = argc > 2 ? argv[2] : "Once upon a time";
  try {
    llm::cpp::Model model(argv[1]);
    llm::cpp::Session session = model.session();
    llm::cpp::GenerateParams params;
    params.max_tokens = 64;
    std::cout << prompt << std::flush;
    session.generate(prompt, params, [](std::string_view piece) {
      std::cout << piece << std::flush;  // always complete UTF-8
      return true;                       // false stops generation
    });
    std::cout << '\n';
  } catch (const llm::cpp::Error &e) {
    std::cout << std::flush;
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
