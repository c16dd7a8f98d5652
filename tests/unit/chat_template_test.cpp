// Chat-template interpreter: every case of tests/data/chat_templates.json
// (rendered by Python jinja2 as transformers sets it up, see
// scripts/gen_chat_template_cases.py) must render identically; plus unit tests
// of the subset boundary, the resource limits and robustness on malformed input.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "format/error.h"
#include "runtime/chat_template.h"
#include "runtime/jinja_interp.h"

namespace {

using llm::jinja::Value;
using Json = nlohmann::ordered_json;  // keeps key order, as Python dicts do

std::string test_data_dir() {
#ifdef LLM_TEST_DATA_DIR
  return LLM_TEST_DATA_DIR;
#else
  // Not defined by the build yet: tests/data beside this file's directory.
  std::string file = __FILE__;
  return file.substr(0, file.rfind("unit/")) + "data";
#endif
}

const std::tm kFixedNow = llm::make_local_time(2024, 7, 26, 12, 0, 0);

Value to_value(const Json &j) {
  switch (j.type()) {
    case Json::value_t::null: return Value::none();
    case Json::value_t::boolean: return Value::boolean(j.get<bool>());
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return Value::integer(j.get<int64_t>());
    case Json::value_t::number_float: return Value::number(j.get<double>());
    case Json::value_t::string: return Value::string(j.get<std::string>());
    case Json::value_t::array: {
      std::vector<Value> items;
      for (const auto &x : j) items.push_back(to_value(x));
      return Value::seq(std::move(items));
    }
    case Json::value_t::object: {
      std::vector<std::pair<Value, Value>> pairs;
      for (auto it = j.begin(); it != j.end(); ++it) pairs.emplace_back(Value::string(it.key()), to_value(it.value()));
      return Value::dict(std::move(pairs));
    }
    default: return Value();
  }
}

struct Outcome {
  bool ok = false;
  std::string text;  // output, or the error message
  llm_status status = LLM_OK;
};

template <class F>
Outcome run(F &&f) {
  Outcome o;
  try {
    o.text = f();
    o.ok = true;
  } catch (const llm::Error &e) {
    o.status = e.status();
    o.text = e.what();
  }
  return o;
}

Outcome render(const std::string &source, const llm::jinja::Variables &vars = {}) {
  llm::jinja::RenderOptions options;
  options.now = kFixedNow;
  return run([&] { return llm::jinja::render(source, vars, options); });
}

std::string render_ok(const std::string &source, const llm::jinja::Variables &vars = {}) {
  Outcome o = render(source, vars);
  EXPECT_TRUE(o.ok) << source << "\n-> " << o.text;
  return o.text;
}

llm_status render_status(const std::string &source, const llm::jinja::Variables &vars = {}) {
  Outcome o = render(source, vars);
  EXPECT_FALSE(o.ok) << source << "\n-> rendered: " << o.text;
  return o.status;
}

// ---- golden cases from jinja2 ---------------------------------------------------------

Json load_cases() {
  std::ifstream in(test_data_dir() + "/chat_templates.json");
  if (!in) return Json();
  return Json::parse(in);
}

// Plain role/content conversations go through the public API, as the C API uses it.
bool plain_messages(const Json &c) {
  if (c.contains("variables") || !c.contains("messages")) return false;
  for (const auto &m : c["messages"]) {
    if (m.size() != 2 || !m.contains("role") || !m.contains("content") || !m["content"].is_string()) return false;
  }
  return true;
}

Outcome run_case(const Json &data, const Json &c) {
  const std::string source = data["templates"][c["template"].get<std::string>()].get<std::string>();
  if (plain_messages(c)) {
    std::vector<llm::ChatMessage> messages;
    for (const auto &m : c["messages"]) messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    llm::ChatTemplateOptions options;
    options.now = kFixedNow;
    return run([&] {
      return llm::render_chat_template(source, messages, c["add_generation_prompt"].get<bool>(),
                                       c["bos_token"].get<std::string>(), c["eos_token"].get<std::string>(), options);
    });
  }
  llm::jinja::Variables vars;
  if (c.contains("messages")) {
    vars = {{"messages", to_value(c["messages"])},
            {"tools", Value::none()},
            {"documents", Value::none()},
            {"add_generation_prompt", Value::boolean(c["add_generation_prompt"].get<bool>())},
            {"bos_token", to_value(c["bos_token"])},
            {"eos_token", to_value(c["eos_token"])}};
  }
  if (c.contains("variables")) {
    for (auto it = c["variables"].begin(); it != c["variables"].end(); ++it) {
      bool replaced = false;
      for (auto &kv : vars)
        if (kv.first == it.key()) {
          kv.second = to_value(it.value());
          replaced = true;
        }
      if (!replaced) vars.emplace_back(it.key(), to_value(it.value()));
    }
  }
  return render(source, vars);
}

TEST(ChatTemplateGolden, AllCasesMatchJinja2) {
  Json data = load_cases();
  ASSERT_FALSE(data.is_null()) << "cannot read " << test_data_dir() << "/chat_templates.json";
  size_t n = 0;
  for (const auto &c : data["cases"]) {
    const std::string name = c["name"].get<std::string>();
    SCOPED_TRACE(name);
    Outcome o = run_case(data, c);
    ++n;
    if (c.value("unsupported", false)) {
      EXPECT_FALSE(o.ok);
      EXPECT_EQ(o.status, LLM_ERR_UNSUPPORTED) << o.text;
    } else if (c.contains("error")) {
      EXPECT_FALSE(o.ok) << "rendered: " << o.text;
      EXPECT_EQ(o.status, LLM_ERR_INVALID_ARGUMENT) << o.text;
      if (c["error"] == "TemplateError") {  // raise_exception(): the template's own message
        EXPECT_NE(o.text.find(c["message"].get<std::string>()), std::string::npos) << o.text;
      }
    } else {
      EXPECT_TRUE(o.ok) << o.text;
      EXPECT_EQ(o.text, c["expected"].get<std::string>());
    }
  }
  EXPECT_GT(n, 500u);
}

// Every family renders the plain conversations through the public API.
TEST(ChatTemplateGolden, FamiliesCovered) {
  Json data = load_cases();
  ASSERT_FALSE(data.is_null());
  for (const char *family : {"llama2", "llama3", "llama3.1", "llama3.2", "mistral-v0.1", "mistral-v0.3", "qwen2",
                             "qwen2.5", "phi3", "gemma", "gemma3", "smollm", "smollm2", "zephyr"}) {
    size_t ok = 0;
    for (const auto &c : data["cases"])
      if (c["template"] == family && c.contains("expected") && plain_messages(c)) ++ok;
    EXPECT_GE(ok, 10u) << family;
  }
}

// ---- public API ---------------------------------------------------------------------------

TEST(ChatTemplate, EmptyTemplateIsUnsupported) {
  Outcome o = run([] { return llm::render_chat_template("", {{"user", "hi"}}, true, "<s>", "</s>"); });
  EXPECT_FALSE(o.ok);
  EXPECT_EQ(o.status, LLM_ERR_UNSUPPORTED);
}

TEST(ChatTemplate, InvalidUtf8IsRepaired) {
  std::string bad = "a\xff\xc3(b";
  Outcome o = run([&] {
    return llm::render_chat_template("{{ messages[0].content }}|{{ messages[0].content|length }}|" + bad,
                                     {{"user", bad}}, false, "", "");
  });
  ASSERT_TRUE(o.ok) << o.text;
  EXPECT_EQ(o.text, "a\xEF\xBF\xBD\xEF\xBF\xBD(b|5|a\xEF\xBF\xBD\xEF\xBF\xBD(b");
}

TEST(ChatTemplate, StrftimeNowUsesTheCurrentTimeByDefault) {
  Outcome o = run([] { return llm::render_chat_template("{{ strftime_now('%Y') }}", {}, false, "", ""); });
  ASSERT_TRUE(o.ok) << o.text;
  ASSERT_EQ(o.text.size(), 4u);
  EXPECT_GE(o.text, "2024");
}

TEST(ChatTemplate, LongConversationsFitTheScaledLimits) {
  std::string big(3u << 20, 'x');  // 3 MiB: above the fixed 1 MiB base
  Outcome o = run([&] {
    return llm::render_chat_template("{% for m in messages %}{{ m.content | trim }}{% endfor %}", {{"user", big}},
                                     false, "", "");
  });
  ASSERT_TRUE(o.ok) << o.text;
  EXPECT_EQ(o.text.size(), big.size());
}

// ---- interpreter semantics ------------------------------------------------------------------

TEST(JinjaInterp, Expressions) {
  EXPECT_EQ(render_ok("{{ 1 + 2 * 3 - 4 / 2 }}"), "5.0");
  EXPECT_EQ(render_ok("{{ 'a' ~ (1 + 2) }}"), "a3");
  EXPECT_EQ(render_status("{{ 'a' ~ 1 + 2 }}"), LLM_ERR_INVALID_ARGUMENT);  // ~ binds tighter than +
  EXPECT_EQ(render_ok("{{ -2|abs }} {{ -(2|abs) }}"), "2 -2");
  EXPECT_EQ(render_ok("{{ [1, 2, 3][1:][0] }}{{ 'abc'[-2:] }}"), "2bc");
  EXPECT_EQ(render_ok("{{ x.y.z is defined }}", {{"x", Value::dict({{Value::string("y"), Value::none()}})}}), "False");
  EXPECT_EQ(render_ok("{{ 9223372036854775807 }}"), "9223372036854775807");
  EXPECT_EQ(render_ok("{{ 'x' if 0 else 'y' }}{{ 0 or none or 'z' }}"), "yz");
}

TEST(JinjaInterp, WhitespaceControl) {
  EXPECT_EQ(render_ok("{% for i in [1, 2] %}\n  {{ i }}\n{% endfor %}\n"), "  1\n  2\n");
  EXPECT_EQ(render_ok("{%- if true -%}  x  {%- endif -%}"), "x");
  EXPECT_EQ(render_ok("a\n  {%- if true %} b{% endif %}"), "a b");
  EXPECT_EQ(render_ok("{{ 'a' }}\n{{ 'b' }}"), "a\nb");
  EXPECT_EQ(render_ok("  {# note #}\nx"), "x");
}

TEST(JinjaInterp, LoopVariablesAndScopes) {
  EXPECT_EQ(render_ok("{% for x in 'ab' %}{{ loop.index }}{{ x }}{{ loop.last }}{% endfor %}"), "1aFalse2bTrue");
  EXPECT_EQ(render_ok("{% set ns = namespace(n=0) %}{% for i in range(5) %}{% if i is odd %}{% continue %}{% endif %}"
                      "{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}"),
            "3");
  EXPECT_EQ(render_ok("{% set v = 1 %}{% for i in [1] %}{% set v = 2 %}{% endfor %}{{ v }}"), "1");
  EXPECT_EQ(render_ok("{% set v = 1 %}{% if true %}{% set v = 2 %}{% endif %}{{ v }}"), "2");
}

TEST(JinjaInterp, RaiseExceptionCarriesTheMessage) {
  Outcome o = render("{{ raise_exception('roles must alternate') }}");
  EXPECT_EQ(o.status, LLM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(o.text.find("roles must alternate"), std::string::npos);
}

// Constructs jinja2 accepts that the subset refuses instead of rendering wrongly.
TEST(JinjaInterp, UnsupportedConstructsAreNamed) {
  const char *cases[] = {
      "{% include 'other.j2' %}",
      "{% extends 'base' %}",
      "{% import 'm' as m %}",
      "{% call m() %}x{% endcall %}",
      "{% block b %}{% endblock %}",
      "{{ 'abc'|truncate(2) }}",
      "{{ [1, 2]|batch(1)|list }}",
      "{{ 'a'.zfill(3) }}",
      "{{ '%s' % 1 }}",
      "{{ [1]|select('odd') }}",
      "{{ range(3) }}",
      "{{ {'a': 1}.items() }}",
      "{{ range }}",
      "{% for x in [1] recursive %}{% endfor %}",
      "{{ 10 ** 20 }}",
      "{{ 99999999999999999999 }}",
      "{{ f(*args) }}",
      "{% macro m() %}{{ varargs }}{% endmacro %}",
      "{{ 'ß'|upper }}",
      "{{ 'a' is sameas 'a' }}",
      "{{ '\\N{BULLET}' }}",
      "{{ lipsum() }}",
      "{{ strftime_now('%f') }}",
      "{{ ('<b>'|safe) + '<i>' }}",
      "{{ 'x'|safe|upper }}",
      "{% set ns = namespace() %}{{ ns }}",
      "{% for i in [1] %}{{ loop }}{% endfor %}",
      "{{ (1).real }}",
  };
  for (const char *src : cases) {
    Outcome o = render(src);
    EXPECT_FALSE(o.ok) << src << " -> " << o.text;
    EXPECT_EQ(o.status, LLM_ERR_UNSUPPORTED) << src << " -> " << o.text;
    EXPECT_NE(o.text.find("not supported"), std::string::npos) << o.text;
  }
}

TEST(JinjaInterp, SyntaxErrorsAreInvalidArgument) {
  const char *cases[] = {
      "{% if %}",     "{% endif %}",       "{{ }}",           "{{ 1 + }}",        "{% for x %}{% endfor %}",
      "{% set %}",    "{{ (1 }}",          "{{ [1 }}",        "{{ 'abc }}",       "{# never closed",
      "{{ x|nope }}", "{{ x is nope }}",   "{% break %}",     "{% frob %}",       "{% for x in y %}",
      "{{ a b }}",    "{{ f(a=1, 2) }}",   "{{ '\\x4' }}",    "{% raw %}no end",  "{{ 1 ) }}",
  };
  for (const char *src : cases) {
    Outcome o = render(src);
    EXPECT_FALSE(o.ok) << src << " -> " << o.text;
    EXPECT_EQ(o.status, LLM_ERR_INVALID_ARGUMENT) << src << " -> " << o.text;
  }
}

// ---- hostile templates ------------------------------------------------------------------------

TEST(JinjaLimits, RunawayRecursion) {
  EXPECT_EQ(render_status("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"), LLM_ERR_UNSUPPORTED);
  EXPECT_EQ(render_status("{% macro f() %}{% for i in [1] %}{{ f() }}{% endfor %}{% endmacro %}{{ f() }}"),
            LLM_ERR_UNSUPPORTED);
}

TEST(JinjaLimits, RunawayLoops) {
  EXPECT_EQ(render_status("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"),
            LLM_ERR_UNSUPPORTED);
  EXPECT_EQ(render_status("{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}"
                          "{% endfor %}"),
            LLM_ERR_UNSUPPORTED);
}

TEST(JinjaLimits, RunawayOutputAndStrings) {
  EXPECT_EQ(render_status("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}"), LLM_ERR_UNSUPPORTED);
  EXPECT_EQ(render_status("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
                          "{% endfor %}"),
            LLM_ERR_UNSUPPORTED);
  EXPECT_EQ(render_status("{{ 'x' * 100000000000 }}"), LLM_ERR_UNSUPPORTED);
  EXPECT_EQ(render_status("{{ [1] * 100000000000 }}"), LLM_ERR_UNSUPPORTED);
  EXPECT_EQ(render_status("{% set x %}{% for i in range(100000) %}{{ 'y' * 50 }}{% endfor %}{% endset %}"),
            LLM_ERR_UNSUPPORTED);
  EXPECT_EQ(render_status("{{ 'ab'|replace('', 'x' * 1000000) }}"), LLM_ERR_UNSUPPORTED);
}

TEST(JinjaLimits, DeepValues) {
  EXPECT_EQ(render_status("{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}"
                          "{% endfor %}{{ ns.l|length }}"),
            LLM_ERR_UNSUPPORTED);
  EXPECT_EQ(render_status("{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% for x in [ns.l] %}"
                          "{% set ns.l = [loop] %}{% endfor %}{% endfor %}"),
            LLM_ERR_UNSUPPORTED);
  EXPECT_EQ(render_status("{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = [ns.l.count] %}"
                          "{% endfor %}"),
            LLM_ERR_UNSUPPORTED);
  // Reference cycles through namespaces are legal and must not recurse or leak.
  EXPECT_EQ(render_ok("{% set ns = namespace() %}{% set ns.self = ns %}{% set ns.l = [ns, ns] %}"
                      "{{ ns.self.self.l|length }}{{ ns.l[0] is sameas ns }}"),
            "2True");
}

TEST(JinjaLimits, DeepSyntax) {
  auto repeat = [](const std::string &s, int n) {
    std::string out;
    for (int i = 0; i < n; ++i) out += s;
    return out;
  };
  const std::string sources[] = {
      "{{ " + repeat("(", 20000) + "1" + repeat(")", 20000) + " }}",
      "{{ " + repeat("[", 20000) + repeat("]", 20000) + " }}",
      "{{ " + repeat("1 + ", 20000) + "1 }}",
      "{{ " + repeat("not ", 20000) + "1 }}",
      "{{ " + repeat("- ", 20000) + "1 }}",
      "{{ x" + repeat("|trim", 20000) + " }}",
      "{{ x" + repeat(".a", 20000) + " }}",
      "{{ x" + repeat("[0]", 20000) + " }}",
      "{{ f" + repeat("()", 20000) + " }}",
      "{{ 1 if " + repeat("1 if 1 else ", 20000) + "1 }}",
      repeat("{% if true %}", 20000) + repeat("{% endif %}", 20000),
      repeat("{% for i in [1] %}", 20000),
      "{{ {" + repeat("'a': {", 20000) + repeat("}", 20000) + "} }}",
      "{% set " + repeat("(", 20000) + "a" + repeat(")", 20000) + " = 1 %}",
  };
  for (const std::string &src : sources) {
    Outcome o = render(src);  // must fail cleanly, not overflow the stack
    EXPECT_FALSE(o.ok) << src.substr(0, 40);
  }
}

// ---- malformed input never crashes --------------------------------------------------------------

std::vector<std::string> family_templates() {
  std::vector<std::string> out;
  Json data = load_cases();
  if (data.is_null()) return out;
  for (auto it = data["templates"].begin(); it != data["templates"].end(); ++it)
    if (it.key().rfind("interp/", 0) != 0) out.push_back(it.value().get<std::string>());
  return out;
}

llm::jinja::Variables sample_vars() {
  std::vector<Value> msgs;
  for (const char *role : {"system", "user", "assistant", "user"})
    msgs.push_back(Value::dict({{Value::string("role"), Value::string(role)},
                                {Value::string("content"), Value::string(" text {{ }} ")}}));
  return {{"messages", Value::seq(std::move(msgs))},
          {"add_generation_prompt", Value::boolean(true)},
          {"bos_token", Value::string("<s>")},
          {"eos_token", Value::string("</s>")}};
}

TEST(JinjaRobustness, EveryTruncationOfEveryFamilyTemplate) {
  std::vector<std::string> templates = family_templates();
  ASSERT_FALSE(templates.empty());
  llm::jinja::Variables vars = sample_vars();
  size_t runs = 0;
  for (const std::string &t : templates) {
    for (size_t n = 0; n <= t.size(); ++n) {
      Outcome o = render(t.substr(0, n), vars);  // any outcome but a crash
      if (!o.ok) {
        EXPECT_TRUE(o.status == LLM_ERR_INVALID_ARGUMENT || o.status == LLM_ERR_UNSUPPORTED) << o.text;
      }
      ++runs;
    }
  }
  EXPECT_GT(runs, 10000u);
}

TEST(JinjaRobustness, RandomMutationsOfFamilyTemplates) {
  std::vector<std::string> templates = family_templates();
  ASSERT_FALSE(templates.empty());
  llm::jinja::Variables vars = sample_vars();
  std::mt19937 rng(1234);
  const std::string alphabet = std::string("{}%#-+~|.,:()[]'\"\\ \n\tabcxyz019_=<>!*/") + '\0' + "\xff\xc3\xa9\xe2";
  for (const std::string &t : templates) {
    for (int trial = 0; trial < 300; ++trial) {
      std::string m = t;
      int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits && !m.empty(); ++e) {
        size_t at = rng() % m.size();
        switch (rng() % 3) {
          case 0: m[at] = alphabet[rng() % alphabet.size()]; break;
          case 1: m.erase(at, 1 + rng() % 8); break;
          default: m.insert(at, 1, alphabet[rng() % alphabet.size()]); break;
        }
      }
      Outcome o = render(m, vars);
      if (!o.ok) {
        EXPECT_TRUE(o.status == LLM_ERR_INVALID_ARGUMENT || o.status == LLM_ERR_UNSUPPORTED) << o.text;
      }
    }
  }
}

TEST(JinjaRobustness, ArbitraryBytes) {
  std::mt19937 rng(99);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string s;
    size_t n = rng() % 64;
    for (size_t i = 0; i < n; ++i) {
      const char pieces[] = "{%#}-+ '\"\\\nifforsetendx|.()[]";
      s += (rng() % 2) ? pieces[rng() % (sizeof pieces - 1)] : static_cast<char>(rng() % 256);
    }
    Outcome o = render(s, sample_vars());
    if (!o.ok) {
      EXPECT_TRUE(o.status == LLM_ERR_INVALID_ARGUMENT || o.status == LLM_ERR_UNSUPPORTED) << o.text;
    }
  }
}

}  // namespace
