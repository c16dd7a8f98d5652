// Replays saved fuzzer inputs through the fuzz entry points (fuzz/fuzz_targets.h),
// so that every bug a fuzzer found stays fixed, in every ordinary build (no
// libFuzzer or Clang needed). Inputs:
//   tests/regression/<target>/<file>  inputs that once crashed or broke an
//                                     invariant (one file per finding; the
//                                     README next to them says what each was)
//   fuzz/corpus/<target>/<file>       the seed corpora (keeps the harness honest)
// <target> is a fuzz target name: model_load, tokenizer, tokenizer_json,
// safetensors, hf_config. Each file is its own test, run in a child process
// so that a crash, a broken invariant (abort), an escaping exception other
// than llm::Error (which the entry points catch: bad input may fail, never
// crash) or a hang (more than kTimeoutSeconds) fails that test alone.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/fuzz_targets.h"

namespace fs = std::filesystem;

namespace {

constexpr unsigned kTimeoutSeconds = 60;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

struct Case {
  std::string target;
  std::string path;
  std::string label;  // for the test name
};

std::vector<Case> collect(const std::string &root, const std::string &prefix) {
  std::vector<Case> cases;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return cases;
  for (const llm::fuzz::Target &t : llm::fuzz::targets()) {
    const fs::path dir = fs::path(root) / t.name;
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<fs::path> files;
    for (const fs::directory_entry &e : fs::directory_iterator(dir, ec))
      if (e.is_regular_file() && e.path().filename().string()[0] != '.' && e.path().filename() != "README.md")
        files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const fs::path &f : files) cases.push_back({t.name, f.string(), prefix + "_" + t.name + "_" + f.filename().string()});
  }
  return cases;
}

std::vector<Case> all_cases() {
  std::vector<Case> cases = collect(LLM_REGRESSION_DIR, "regression");
  std::vector<Case> seeds = collect(LLM_FUZZ_CORPUS_DIR, "seed");
  cases.insert(cases.end(), seeds.begin(), seeds.end());
  return cases;
}

std::string test_name(const testing::TestParamInfo<Case> &info) {
  std::string name;
  for (char c : info.param.label) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name + "_" + std::to_string(info.index);  // unique even if two labels sanitize alike
}

class Replay : public testing::TestWithParam<Case> {};

// Runs the entry point on `bytes` in a child process; returns "" when it
// returned normally, else what went wrong.
std::string replay_in_child(llm::fuzz::Entry entry, const std::string &bytes) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return std::string("fork failed: ") + std::strerror(errno);
  if (pid == 0) {
    ::alarm(kTimeoutSeconds);
    if (!kSanitized) {  // turn runaway allocation into bad_alloc (sanitizers reserve huge address space)
      // 4 GiB: above what any saved input legitimately needs, below the
      // allocations the fuzzers flagged (libFuzzer's limit is 2 GB).
      const rlimit limit{rlim_t{4} << 30, rlim_t{4} << 30};
      ::setrlimit(RLIMIT_AS, &limit);
    }
    int code = 0;
    try {
      entry(reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size());
    } catch (const std::exception &e) {
      std::fprintf(stderr, "exception other than llm::Error escaped: %s\n", e.what());
      code = 3;
    } catch (...) {
      std::fprintf(stderr, "non-standard exception escaped\n");
      code = 3;
    }
    std::exit(code);  // runs static destructors: the entry points' temporary files go away
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return std::string("waitpid failed: ") + std::strerror(errno);
  if (WIFEXITED(status)) {
    if (WEXITSTATUS(status) == 0) return "";
    if (WEXITSTATUS(status) == 3) return "an exception other than llm::Error escaped (see stderr)";
    return "exited with status " + std::to_string(WEXITSTATUS(status)) + " (sanitizer report on stderr?)";
  }
  if (WIFSIGNALED(status)) {
    if (WTERMSIG(status) == SIGALRM) return "timed out (> " + std::to_string(kTimeoutSeconds) + " s)";
    return std::string("killed by signal ") + strsignal(WTERMSIG(status)) + " (crash or broken invariant; see stderr)";
  }
  return "ended with wait status " + std::to_string(status);
}

TEST_P(Replay, EntryPointReturns) {
  const Case &c = GetParam();
  llm::fuzz::Entry entry = llm::fuzz::find_target(c.target);
  ASSERT_NE(entry, nullptr) << c.target;
  std::ifstream in(c.path, std::ios::binary);
  ASSERT_TRUE(in) << "cannot read " << c.path;
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string problem = replay_in_child(entry, bytes);
  EXPECT_EQ(problem, "") << c.path;
}

INSTANTIATE_TEST_SUITE_P(Inputs, Replay, testing::ValuesIn(all_cases()), test_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Replay);

// The seed corpora exist and every target has some: a harness whose inputs
// vanished would pass vacuously.
TEST(RegressionInputs, EveryTargetHasSeeds) {
  for (const llm::fuzz::Target &t : llm::fuzz::targets()) {
    std::error_code ec;
    const fs::path dir = fs::path(LLM_FUZZ_CORPUS_DIR) / t.name;
    size_t n = 0;
    for (const fs::directory_entry &e : fs::directory_iterator(dir, ec)) n += e.is_regular_file();
    EXPECT_GT(n, 0u) << "no seeds in " << dir;
  }
}

}  // namespace
