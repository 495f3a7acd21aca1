// POST /api/create and POST /api/blobs/:digest end to end: uploads (good and bad digests, the body
// limit and chunked uploads), streamed create statuses, a created model answering /api/chat with
// its SYSTEM, PARAMETERs and TEMPLATE applied, the request checks, `show`'s Modelfile round trip,
// and the option table store/ keeps agreeing with server/options.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "server/adapters/ollama.h"
#include "server/options.h"
#include "server_test_util.h"
#include "store/modelfile.h"

namespace hearth::server {
namespace {

using namespace test_util;

std::string file_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

class CreateApi : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        store_ = new TempStore("create");
        server_ = start_server(test_config(store_->root())).release();
        stories_ = file_bytes(test::testdata_path("models/stories260K.gguf"));
        stories_digest_ = "sha256:" + sha256_hex(std::string_view(stories_));
    }
    static void TearDownTestSuite() {
        delete server_;
        delete store_;
    }
    Http http() { return Http(server_->port()); }
    // Temporary files in blobs/ (uploads and creates in flight); none once a request is answered.
    static size_t temps() {
        size_t n = 0;
        for (const auto& e : fs::directory_iterator(fs::path(store_->root()) / "blobs"))
            n += e.path().filename().string().rfind(".", 0) == 0;
        return n;
    }
    // A streamed create: every status object, in order.
    std::vector<json> create(const json& body, int* http_status = nullptr) {
        std::vector<json> lines;
        const int st = http().stream("/api/create", body, [&](const json& j) {
            lines.push_back(j);
            return true;
        });
        if (http_status) *http_status = st;
        return lines;
    }
    void upload_stories() {
        Reply r = http().request("POST", "/api/blobs/" + stories_digest_, stories_);
        ASSERT_TRUE(r.status == 201 || r.status == 200) << r.status << " " << r.body;
    }

    static TempStore* store_;
    static Server* server_;
    static std::string stories_, stories_digest_;
};
TempStore* CreateApi::store_ = nullptr;
Server* CreateApi::server_ = nullptr;
std::string CreateApi::stories_, CreateApi::stories_digest_;

TEST_F(CreateApi, UploadsBlobs) {
    // A wrong digest: 400, and nothing is kept.
    const std::string wrong = "sha256:" + std::string(64, 'a');
    Reply r = http().request("POST", "/api/blobs/" + wrong, stories_);
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_NE(r.j()["error"].get<std::string>().find("digest mismatch"), std::string::npos) << r.body;
    EXPECT_EQ(http().request("HEAD", "/api/blobs/" + wrong).status, 404);
    EXPECT_EQ(temps(), 0u);
    EXPECT_EQ(http().request("POST", "/api/blobs/sha256:xyz", "abc").status, 400);

    // The right one: 201, then the blob exists (HEAD 200) and a second upload is a no-op 200.
    const std::string text = "a small blob\n";
    const std::string d = "sha256:" + sha256_hex(std::string_view(text));
    EXPECT_EQ(http().request("POST", "/api/blobs/" + d, text).status, 201);
    EXPECT_EQ(http().request("HEAD", "/api/blobs/" + d).status, 200);
    EXPECT_EQ(http().request("POST", "/api/blobs/" + d, text).status, 200);
    std::ifstream f(fs::path(store_->root()) / "blobs" / ("sha256-" + d.substr(7)));
    std::string back((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_EQ(back, text);
    // An empty body is a blob too (httplib hands it to the plain handler).
    const std::string empty = "sha256:" + sha256_hex(std::string_view(""));
    EXPECT_EQ(httplib::Client("127.0.0.1", server_->port()).Post(("/api/blobs/" + empty).c_str(), "", "application/octet-stream")->status, 201);
    EXPECT_EQ(temps(), 0u);
}

TEST_F(CreateApi, BigUploadsGoChunked) {
    // HEARTH_MAX_BODY limits a Content-Length upload; a chunked one (Ollama's client) is streamed
    // to disk whatever its size.
    ServerConfig c = test_config(store_->root());
    c.max_body_bytes = 64 << 10;
    auto small = start_server(c);
    ASSERT_TRUE(small);
    httplib::Client cli("127.0.0.1", small->port());
    std::string big(300000, '\0');
    for (size_t i = 0; i < big.size(); ++i) big[i] = (char)(i * 2654435761u >> 24);
    const std::string path = "/api/blobs/sha256:" + sha256_hex(std::string_view(big));
    auto r = cli.Post(path.c_str(), big, "application/octet-stream");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413) << r->body;
    EXPECT_NE(r->body.find("chunked"), std::string::npos) << r->body;
    auto chunked = cli.Post(
        path.c_str(),
        [&](size_t offset, httplib::DataSink& sink) {
            const size_t n = std::min<size_t>(100000, big.size() - offset);
            sink.write(big.data() + offset, n);
            if (offset + n == big.size()) sink.done();
            return true;
        },
        "application/octet-stream");
    ASSERT_TRUE(chunked);
    EXPECT_EQ(chunked->status, 201) << chunked->body;
    EXPECT_EQ(http().request("HEAD", path).status, 200);
    EXPECT_EQ(temps(), 0u);
}

TEST_F(CreateApi, CreatedModelRunsWithItsSystemParametersAndTemplate) {
    upload_stories();
    int status = 0;
    auto lines = create({{"model", "plain-stories"}, {"files", {{"stories260K.gguf", stories_digest_}}}}, &status);
    ASSERT_EQ(status, 200);
    ASSERT_FALSE(lines.empty());
    EXPECT_EQ(lines.back(), json({{"status", "success"}}));

    const std::string tmpl = "{{ 'one two three four five six seven eight nine ten ' }}{% for m in messages %}{{ m.content }}{% endfor %}";
    lines = create({{"model", "my-stories:v1"},
                    {"from", "plain-stories"},
                    {"system", "Once upon a time there was a dragon who loved to read."},
                    {"template", tmpl},
                    {"parameters", {{"num_predict", 4}, {"temperature", 0}, {"stop", json::array({"zzz"})}}},
                    {"messages", {{{"role", "user"}, {"content", "Hello"}}}},
                    {"license", "MIT"}},
                   &status);
    ASSERT_EQ(status, 200);
    std::vector<std::string> statuses;
    for (const auto& l : lines) {
        ASSERT_TRUE(l.contains("status")) << l.dump();
        statuses.push_back(l["status"]);
    }
    EXPECT_EQ(statuses.back(), "success");
    EXPECT_NE(std::find(statuses.begin(), statuses.end(), "using existing layer " + stories_digest_), statuses.end());
    EXPECT_NE(std::find(statuses.begin(), statuses.end(), "writing manifest"), statuses.end());
    EXPECT_EQ(temps(), 0u);

    // The new model lists and shows its layers.
    Reply show = http().post("/api/show", {{"model", "my-stories:v1"}});
    ASSERT_EQ(show.status, 200) << show.body;
    EXPECT_EQ(show.j()["system"], "Once upon a time there was a dragon who loved to read.");
    EXPECT_EQ(show.j()["template"], tmpl);
    EXPECT_EQ(show.j()["license"], "MIT");

    // Chat: the model's parameters (num_predict 4) apply, and the prompt is exactly its TEMPLATE
    // rendering its SYSTEM, its MESSAGE history and the user's message.
    auto chat = [&](const std::string& model) {
        json body = {{"model", model}, {"stream", false}, {"messages", {{{"role", "user"}, {"content", "Hi"}}}}};
        Reply r = http().post("/api/chat", body);
        EXPECT_EQ(r.status, 200) << r.body;
        return r.j();
    };
    const json mine = chat("my-stories:v1");
    EXPECT_EQ(mine["eval_count"], 4) << mine.dump();
    EXPECT_EQ(mine["done_reason"], "length");
    Reply tok = http().post("/api/tokenize", {{"model", "my-stories:v1"},
                                               {"text", "one two three four five six seven eight nine ten Once upon a time "
                                                        "there was a dragon who loved to read.HelloHi"},
                                               {"add_special", true}});
    ASSERT_EQ(tok.status, 200) << tok.body;
    EXPECT_EQ(mine["prompt_eval_count"], tok.j()["tokens"].size()) << mine.dump();

    // show --modelfile round-trips: its text parses to the model's values, and creating from it
    // (the older {modelfile} form; FROM is this store's blob) gives the same layers.
    auto mf = store::parse_modelfile(show.j()["modelfile"].get<std::string>());
    ASSERT_TRUE(mf.ok()) << mf.status().message() << "\n" << show.j()["modelfile"];
    EXPECT_EQ(*mf->system, "Once upon a time there was a dragon who loved to read.");
    EXPECT_EQ(*mf->template_text, tmpl);
    EXPECT_EQ(mf->parameters, json::parse(R"({"num_predict":4,"temperature":0,"stop":["zzz"]})"));
    EXPECT_EQ(mf->messages, (std::vector<store::ModelfileMessage>{{"user", "Hello"}}));
    EXPECT_EQ(mf->licenses, std::vector<std::string>{"MIT"});
    Reply again = http().post("/api/create", {{"model", "my-stories:again"}, {"modelfile", show.j()["modelfile"]}, {"stream", false}});
    ASSERT_EQ(again.status, 200) << again.body;
    EXPECT_EQ(again.j(), json({{"status", "success"}}));
    Reply show2 = http().post("/api/show", {{"model", "my-stories:again"}});
    ASSERT_EQ(show2.status, 200);
    auto tags = http().get("/api/tags").j()["models"];
    std::map<std::string, std::string> digests;
    for (const auto& m : tags) digests[m["name"]] = m["digest"];
    EXPECT_EQ(digests["my-stories:again"], digests["my-stories:v1"]);  // same manifest bytes

    // Deleting one of the models that share the weights keeps them for the others.
    EXPECT_EQ(http().request("DELETE", "/api/delete", json({{"model", "plain-stories"}}).dump()).status, 200);
    EXPECT_EQ(chat("my-stories:v1")["eval_count"], 4);
}

TEST_F(CreateApi, ChecksTheRequestBeforeAnswering) {
    upload_stories();
    auto fails = [&](const json& body, int want, const std::string& part) {
        Reply r = http().post("/api/create", body);
        EXPECT_EQ(r.status, want) << body.dump() << " -> " << r.body;
        EXPECT_NE(r.j().value("error", std::string()).find(part), std::string::npos) << r.body;
    };
    const json files = {{"stories260K.gguf", stories_digest_}};
    fails({{"files", files}}, 400, "model is required");
    fails({{"model", "x"}}, 400, "no base model");
    fails({{"model", "x"}, {"from", "no-such-model"}}, 404, "base model 'no-such-model' not found");
    fails({{"model", "x"}, {"files", {{"m.gguf", "sha256:" + std::string(64, 'b')}}}}, 400, "is not in the store");
    fails({{"model", "x"}, {"from", "/etc/passwd.gguf"}}, 400, "local path is not accepted");
    fails({{"model", "x"}, {"files", files}, {"template", "{{ .System }} {{ .Prompt }}"}}, 400, "Go template");
    fails({{"model", "x"}, {"files", files}, {"parameters", {{"temperature", "hot"}}}}, 400, "temperature");
    fails({{"model", "x"}, {"files", files}, {"parameters", {{"nope", 1}}}}, 400, "unknown parameter");
    fails({{"model", "x"}, {"files", files}, {"adapters", {{"lora.gguf", stories_digest_}}}}, 400,
          "adapters: \"lora.gguf\": not a LoRA adapter: general.type is");
    fails({{"model", "x"}, {"files", files}, {"quantize", "q9"}}, 400, "q9");
    fails({{"model", "x"}, {"files", files}, {"renderer", "qwen3"}}, 400, "renderer");
    fails({{"model", "bad name"}, {"files", files}}, 400, "invalid model name");
    fails({{"model", "x"}, {"modelfile", "FROM stories\nFORM x\n"}}, 400, "modelfile:2: unknown instruction \"FORM\"");
    EXPECT_FALSE(http().post("/api/show", {{"model", "x"}}).status == 200);
    // The older form works with a store model (non-streamed here).
    Reply r = http().post("/api/create", {{"name", "short-mf"}, {"modelfile", "FROM stories\nPARAMETER num_predict 2\n"}, {"stream", false}});
    ASSERT_EQ(r.status, 200) << r.body;
    Reply g = http().post("/api/generate", {{"model", "short-mf"}, {"prompt", "Once"}, {"stream", false}});
    ASSERT_EQ(g.status, 200) << g.body;
    EXPECT_EQ(g.j()["eval_count"], 2);
    EXPECT_EQ(temps(), 0u);
}

TEST_F(CreateApi, SafetensorsFilesGoThroughTheConverter) {
    // A checkpoint's files are uploaded as blobs and named in "files"; the converter reads them
    // under their names. An architecture it does not know fails in the stream, leaving nothing.
    auto upload = [&](const std::string& text) {
        const std::string d = "sha256:" + sha256_hex(std::string_view(text));
        EXPECT_EQ(http().request("POST", "/api/blobs/" + d, text).status, 201);
        return d;
    };
    const std::string config = upload(R"({"architectures": ["NopeForCausalLM"], "hidden_size": 8})");
    const std::string weights = upload("not really safetensors");
    int status = 0;
    auto lines = create({{"model", "converted"}, {"files", {{"config.json", config}, {"model.safetensors", weights}}}}, &status);
    EXPECT_EQ(status, 200);
    ASSERT_FALSE(lines.empty());
    EXPECT_EQ(lines.front()["status"], "converting model");
    ASSERT_TRUE(lines.back().contains("error")) << lines.back().dump();
    EXPECT_NE(lines.back()["error"].get<std::string>().find("NopeForCausalLM is not supported"), std::string::npos) << lines.back();
    EXPECT_EQ(http().post("/api/show", {{"model", "converted"}}).status, 404);
    EXPECT_EQ(temps(), 0u);
    // A checkpoint needs its config.json.
    Reply r = http().post("/api/create", {{"model", "converted"}, {"files", {{"model.safetensors", weights}}}});
    EXPECT_EQ(r.status, 400) << r.body;
}

// The adapter alone, golden JSON in and out (STYLE.md §8).
TEST(CreateAdapter, ParsesOllamasRequestAndWritesItsStatuses) {
    bool stream = false;
    auto r = ollama::parse_create(ollama::json::parse(R"({
        "model": "mario", "from": "llama3.2", "files": {"model.gguf": "sha256:abc"}, "adapters": {},
        "template": "{{ messages }}", "system": "You are Mario.", "license": ["MIT", "Apache"],
        "parameters": {"temperature": 0.5, "stop": ["a", "b"]},
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": null}],
        "quantize": "q4_K_M", "requires": "0.6.0"})"), stream);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_TRUE(stream);
    EXPECT_EQ(r->model, "mario");
    EXPECT_EQ(r->from, "llama3.2");
    EXPECT_EQ(r->files, (std::map<std::string, std::string>{{"model.gguf", "sha256:abc"}}));
    EXPECT_TRUE(r->adapters.empty());
    EXPECT_EQ(*r->template_text, "{{ messages }}");
    EXPECT_EQ(*r->system, "You are Mario.");
    EXPECT_EQ(r->licenses, (std::vector<std::string>{"MIT", "Apache"}));
    EXPECT_EQ(r->parameters, json::parse(R"({"temperature":0.5,"stop":["a","b"]})"));
    EXPECT_EQ(*r->messages, (std::vector<store::ModelfileMessage>{{"user", "hi"}, {"assistant", ""}}));
    EXPECT_EQ(r->quantize, "q4_K_M");
    EXPECT_EQ(r->requires_version, "0.6.0");
    EXPECT_FALSE(r->allow_paths);

    // The older form, with "name"; empty template/system are none, as in Ollama.
    r = ollama::parse_create(ollama::json::parse(R"({"name": "m", "modelfile": "FROM stories\nSYSTEM hi\nPARAMETER top_k 3\n",
                                                    "system": "", "stream": false})"), stream);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_FALSE(stream);
    EXPECT_EQ(r->from, "stories");
    EXPECT_EQ(*r->system, "hi");
    EXPECT_EQ(r->parameters, json::parse(R"({"top_k":3})"));
    EXPECT_FALSE(r->allow_paths);

    for (const char* bad : {R"({"files": {}})", R"({"model": "m", "files": {"a": 1}})", R"({"model": "m", "license": 3})",
                            R"({"model": "m", "messages": [{"content": "x"}]})", R"({"model": "m", "parser": "qwen3"})",
                            R"({"model": "m", "path": "/srv/Modelfile"})", R"({"model": "m", "stream": "yes"})"})
        EXPECT_FALSE(ollama::parse_create(ollama::json::parse(bad), stream).ok()) << bad;

    store::CreateStatus st;
    st.status = "writing manifest";
    EXPECT_EQ(ollama::create_status_json(st).dump(), R"({"status":"writing manifest"})");
    st = {"hashing model.gguf", "", 1000, 250};
    EXPECT_EQ(ollama::create_status_json(st).dump(), R"({"status":"hashing model.gguf","total":1000,"completed":250})");
}

// Every option name store/'s Modelfile table knows, server/options accepts with that type (and
// refuses with another): the two tables cannot drift apart unnoticed.
TEST(CreateOptionTable, AgreesWithTheServersOptions) {
    for (size_t i = 0; i < store::kParameterCount; ++i) {
        const auto& p = store::kParameters[i];
        json good, bad;
        switch (p.type) {
        case store::ParamType::integer: good = 3, bad = "x"; break;
        case store::ParamType::number: good = 0.5, bad = "x"; break;
        case store::ParamType::boolean: good = true, bad = "x"; break;
        case store::ParamType::string_list: good = json::array({"x"}), bad = 1; break;
        }
        RequestOptions o;
        EXPECT_TRUE(apply_options(json{{p.name, good}}, o).ok()) << p.name;
        EXPECT_TRUE(o.ignored.empty()) << p.name << " is unknown to server/options";
        RequestOptions o2;
        EXPECT_FALSE(apply_options(json{{p.name, bad}}, o2).ok()) << p.name;
        EXPECT_TRUE(store::normalize_parameter(p.name, good).ok()) << p.name;
    }
}

}  // namespace
}  // namespace hearth::server
