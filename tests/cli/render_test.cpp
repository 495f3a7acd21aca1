// `hearth render-template TEMPLATE CONVERSATION`: prints the rendering byte for byte; a template
// that rejects the conversation, a syntax error or a bad file is one error line naming the
// template line, with exit status 1.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cli/cli_util.h"
#include "support/testdata.h"

namespace {

namespace fs = std::filesystem;

using RenderRun = hearth::test::HearthRun;

fs::path scratch(const std::string& name) { return hearth::test::cli_temp_file(name); }

fs::path write_file(const std::string& name, const std::string& text) {
    const fs::path p = scratch(name);
    std::ofstream(p, std::ios::binary) << text;
    return p;
}

RenderRun render_template(const std::string& tmpl, const std::string& conversation) {
    return hearth::test::run_hearth("render-template '" + tmpl + "' '" + conversation + "'");
}

void expect_one_error_line(const RenderRun& r, const std::string& what) {
    hearth::test::expect_one_error_line(r, "render-template", what);
}

TEST(ChatCliRenderTemplate, PrintsTheRenderingOfAModelTemplate) {
    const std::string tmpl = hearth::test::testdata_path("templates/Qwen-Qwen2.5-7B-Instruct.jinja");
    const fs::path conv = write_file("conv.json", R"({"messages": [{"role": "user", "content": "Hello"}], "add_generation_prompt": true})");
    const RenderRun r = render_template(tmpl, conv.string());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out,
              "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
              "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatCliRenderTemplate, ExtraVariablesReachTheTemplate) {
    const fs::path tmpl = write_file("t.jinja", "{{ bos_token }}{% if enable_thinking %}think{% endif %}|{{ messages|length }}\n");
    const fs::path conv = write_file("c.json", R"({"messages": [], "bos_token": "<s>", "enable_thinking": true})");
    const RenderRun r = render_template(tmpl.string(), conv.string());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "<s>think|0");
}

TEST(ChatCliRenderTemplate, TemplateRejectingTheConversationNamesItsLine) {
    const std::string tmpl = hearth::test::testdata_path("templates/google-gemma-2-2b-it.jinja");
    const fs::path conv = write_file("sys.json", R"({"messages": [{"role": "system", "content": "x"}], "bos_token": "<bos>"})");
    expect_one_error_line(render_template(tmpl, conv.string()), "line 1: System role not supported");

    const fs::path undefined_attr = write_file("u.jinja", "ok\n{{ missing.attr }}");
    expect_one_error_line(render_template(undefined_attr.string(), conv.string()), "line 2: UndefinedError: 'missing' is undefined");
}

TEST(ChatCliRenderTemplate, SyntaxErrorsNameLineAndColumn) {
    const fs::path tmpl = write_file("bad.jinja", "hello\n{% for x in %}{% endfor %}");
    const fs::path conv = write_file("empty.json", "{}");
    expect_one_error_line(render_template(tmpl.string(), conv.string()), "line 2, column ");
}

TEST(ChatCliRenderTemplate, BadInputFilesAreOneErrorLine) {
    const fs::path tmpl = write_file("ok.jinja", "{{ messages }}");
    expect_one_error_line(render_template(scratch("absent.jinja").string(), write_file("e.json", "{}").string()), "cannot open");
    expect_one_error_line(render_template(tmpl.string(), write_file("bad.json", "{\"messages\": [").string()), "invalid JSON");
    expect_one_error_line(render_template(tmpl.string(), write_file("arr.json", "[1, 2]").string()), "expected a JSON object");
}

}  // namespace
