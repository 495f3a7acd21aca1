// Every protocol's keepalive (written after a quiet second so a gone client is noticed) is
// something its clients skip: an empty NDJSON chunk, an SSE comment, Anthropic's ping event.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/adapters/anthropic.h"
#include "server/adapters/ollama.h"
#include "server/adapters/openai.h"
#include "server/adapters/openai_responses.h"

namespace hearth::server {
namespace {

TEST(TextWriter, KeepalivesAreInertForTheirClients) {
    for (bool chat : {false, true}) {
        const std::string k = ollama::make_writer(chat, "m")->stream_keepalive();
        ASSERT_FALSE(k.empty());
        EXPECT_EQ(k.back(), '\n');
        EXPECT_EQ(k.find('\n'), k.size() - 1);  // one NDJSON line
        const auto j = nlohmann::json::parse(k);
        EXPECT_EQ(j["done"], false);
        EXPECT_EQ(chat ? j["message"]["content"] : j["response"], "");
    }
    openai::ReplyInfo info;
    info.model = "m";
    for (const std::string& k : {openai::make_chat_writer(info)->stream_keepalive(),
                                 openai::make_completion_writer(info)->stream_keepalive(),
                                 openai_responses::make_writer({}, openai_responses::default_writer_options("m"))
                                     ->stream_keepalive()}) {
        // An SSE comment: a line starting with ':' and the blank line ending the event.
        ASSERT_GE(k.size(), 3u);
        EXPECT_EQ(k.front(), ':');
        EXPECT_EQ(k.substr(k.size() - 2), "\n\n");
    }
    const std::string ping = anthropic::make_writer({})->stream_keepalive();
    EXPECT_EQ(ping, "event: ping\ndata: {\"type\":\"ping\"}\n\n");
}

}  // namespace
}  // namespace hearth::server
