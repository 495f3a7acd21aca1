// `show --modelfile` (/api/show's "modelfile") of a model with LoRA adapter layers writes one
// ADAPTER line per adapter blob, so the Modelfile recreates the model with them.
#include <gtest/gtest.h>

#include "server/adapters/ollama.h"
#include "store/modelfile.h"

namespace hearth::server::ollama {
namespace {

TEST(LoraShow, ModelfileNamesTheAdapterBlobs) {
    store::ModelRef ref;
    ref.name = "tuned:latest";
    ref.model_path = "/models/blobs/sha256-" + std::string(64, 'a');
    ref.has_adapter = true;
    ref.adapter_paths = {"/models/blobs/sha256-" + std::string(64, 'b'), "/models/blobs/sha256-" + std::string(64, 'c')};
    const std::string mf = show_response(ref, store::GgufInfo{}, false)["modelfile"].get<std::string>();
    EXPECT_NE(mf.find("ADAPTER " + ref.adapter_paths[0] + "\nADAPTER " + ref.adapter_paths[1] + "\n"), std::string::npos) << mf;
    auto parsed = store::parse_modelfile(mf);
    ASSERT_TRUE(parsed.ok()) << parsed.status().message();
    EXPECT_EQ(parsed->adapters, ref.adapter_paths);
}

}  // namespace
}  // namespace hearth::server::ollama
