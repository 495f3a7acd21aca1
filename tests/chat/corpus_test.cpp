// Every chat template of the shared corpus (../shared/testdata/templates) rendered with every
// conversation of tests/chat/conversations must match, byte for byte, what Python's jinja2 made
// of it with the Hugging Face renderer's settings (scripts/gen-template-expectations.py wrote
// tests/chat/expected/). Where jinja2 raised, we must fail too, with the same message for the
// template's own raise_exception.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "chat/template.h"
#include "support/testdata.h"

namespace {

namespace fs = std::filesystem;

// The instant the generator pins strftime_now to: 2026-03-09 14:30:05 local time.
std::time_t fixed_now() {
    std::tm tm{};
    tm.tm_year = 2026 - 1900;
    tm.tm_mon = 2;
    tm.tm_mday = 9;
    tm.tm_hour = 14;
    tm.tm_min = 30;
    tm.tm_sec = 5;
    tm.tm_isdst = -1;
    return std::mktime(&tm);
}

std::string slurp(const fs::path& p) { return hearth::test::read_text_file(p.string()); }

fs::path chat_test_dir() { return fs::path(HEARTH_SOURCE_DIR) / "tests" / "chat"; }

// Index of the first differing byte, with some context, for failure messages.
std::string first_difference(const std::string& want, const std::string& got) {
    size_t i = 0;
    while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
    const size_t from = i > 60 ? i - 60 : 0;
    return "first difference at byte " + std::to_string(i) + "\n  want: ..." + want.substr(from, 140) +
           "\n  got:  ..." + got.substr(from, 140);
}

TEST(ChatCorpus, EveryTemplateRendersEveryConversationLikeJinja2) {
    const std::string templates_dir = hearth::test::testdata_path("templates");
    ASSERT_TRUE(fs::is_directory(templates_dir)) << templates_dir;
    std::vector<fs::path> templates, conversations;
    for (const auto& e : fs::directory_iterator(templates_dir))
        if (e.path().extension() == ".jinja") templates.push_back(e.path());
    for (const auto& e : fs::directory_iterator(chat_test_dir() / "conversations"))
        if (e.path().extension() == ".json") conversations.push_back(e.path());
    std::sort(templates.begin(), templates.end());
    std::sort(conversations.begin(), conversations.end());
    ASSERT_EQ(templates.size(), 58u);
    ASSERT_GE(conversations.size(), 10u);

    hearth::chat::RenderOptions options;
    options.now = fixed_now();
    int n_pass = 0, n_total = 0;
    for (const fs::path& tpath : templates) {
        const std::string stem = tpath.stem().string();
        auto tmpl = hearth::chat::ChatTemplate::parse(slurp(tpath));
        for (const fs::path& cpath : conversations) {
            ++n_total;
            const std::string case_name = stem + " x " + cpath.stem().string();
            if (!tmpl.ok()) {
                ADD_FAILURE() << case_name << ": parse failed: " << tmpl.status().message();
                continue;
            }
            const auto context = nlohmann::ordered_json::parse(slurp(cpath));
            const fs::path expected = chat_test_dir() / "expected" / stem / cpath.stem().string();
            const auto got = tmpl->render(context, options);
            if (fs::exists(expected.string() + ".txt")) {
                const std::string want = slurp(expected.string() + ".txt");
                if (!got.ok()) {
                    ADD_FAILURE() << case_name << ": render failed: " << got.status().message();
                } else if (*got != want) {
                    ADD_FAILURE() << case_name << ": " << first_difference(want, *got);
                } else {
                    ++n_pass;
                }
            } else {
                ASSERT_TRUE(fs::exists(expected.string() + ".error")) << expected << ".{txt,error} missing: run scripts/gen-template-expectations.py";
                const std::string err = slurp(expected.string() + ".error");
                const std::string type = err.substr(0, err.find('\n'));
                const std::string message = err.substr(err.find('\n') + 1);
                if (got.ok()) {
                    ADD_FAILURE() << case_name << ": rendered, but jinja2 raised " << err;
                } else if ((type == "TemplateError" || type == "UndefinedError" || type == "SecurityError") &&
                           got.status().message().find(message) == std::string::npos) {
                    ADD_FAILURE() << case_name << ": error '" << got.status().message() << "', jinja2 said '" << err << "'";
                } else {
                    ++n_pass;
                }
            }
        }
    }
    std::printf("chat template corpus: %d of %d (template x conversation) cases match jinja2\n", n_pass, n_total);
    EXPECT_EQ(n_pass, n_total);
}

}  // namespace
