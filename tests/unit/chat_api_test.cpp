// llm_chat_apply_template through the C API: a model file carrying a ChatML
// template renders messages; buffer rules; argument errors; a model without a
// template, and a template that raises, report their statuses.
#include <gtest/gtest.h>

#include <string>

#include "format/model_file.h"
#include "llm.h"
#include "tests/common/synthetic_model.h"

namespace {

std::string write_model(const std::string &name, const std::string &tmpl) {
  std::string path = testing::TempDir() + name;
  llm::ModelWriter w(path);
  llm::ModelMetadata meta;
  meta.name = "chat";
  meta.hparams = llm::test::tiny_hparams();
  meta.generation.bos_id = 1;
  meta.generation.eos_ids = {2};
  meta.generation.chat_template = tmpl;
  meta.vocab_only = true;
  w.finish(meta, llm::test::byte_tokenizer());
  return path;
}

const char *kChatML =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

TEST(ChatApi, RendersStoredTemplate) {
  llm_model *m = nullptr;
  ASSERT_EQ(llm_model_load(write_model("chatml.llm", kChatML).c_str(), nullptr, &m), LLM_OK) << llm_last_error();
  llm_chat_message msgs[] = {{"system", "Be brief."}, {"user", "Hi \xc3\xa9"}};
  size_t len = 0;
  ASSERT_EQ(llm_chat_apply_template(m, msgs, 2, 1, nullptr, 0, &len), LLM_ERR_BUFFER_TOO_SMALL);
  std::string out(len, '\0');
  ASSERT_EQ(llm_chat_apply_template(m, msgs, 2, 1, out.data(), out.size(), &len), LLM_OK) << llm_last_error();
  EXPECT_EQ(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi \xc3\xa9<|im_end|>\n"
                 "<|im_start|>assistant\n");
  EXPECT_EQ(llm_chat_apply_template(m, msgs, 2, 0, out.data(), out.size(), &len), LLM_OK);
  EXPECT_EQ(std::string(out.data(), len).find("assistant"), std::string::npos);
  // Misuse.
  EXPECT_EQ(llm_chat_apply_template(nullptr, msgs, 2, 1, nullptr, 0, &len), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(llm_chat_apply_template(m, nullptr, 2, 1, nullptr, 0, &len), LLM_ERR_INVALID_ARGUMENT);
  llm_chat_message bad[] = {{"user", nullptr}};
  EXPECT_EQ(llm_chat_apply_template(m, bad, 1, 1, nullptr, 0, &len), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(llm_chat_apply_template(m, msgs, 2, 1, nullptr, 0, nullptr), LLM_ERR_INVALID_ARGUMENT);
  llm_model_free(m);
}

TEST(ChatApi, MissingTemplateAndRaisedErrors) {
  llm_model *m = nullptr;
  llm_chat_message msgs[] = {{"user", "x"}};
  size_t len = 0;
  ASSERT_EQ(llm_model_load(write_model("notemplate.llm", "").c_str(), nullptr, &m), LLM_OK);
  EXPECT_EQ(llm_chat_apply_template(m, msgs, 1, 1, nullptr, 0, &len), LLM_ERR_UNSUPPORTED);
  llm_model_free(m);
  ASSERT_EQ(llm_model_load(write_model("raises.llm", "{{ raise_exception('roles must alternate') }}").c_str(),
                           nullptr, &m),
            LLM_OK);
  EXPECT_EQ(llm_chat_apply_template(m, msgs, 1, 1, nullptr, 0, &len), LLM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(llm_last_error()).find("roles must alternate"), std::string::npos) << llm_last_error();
  llm_model_free(m);
}

}  // namespace
