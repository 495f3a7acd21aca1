// One forward pass worth of tokens from one or many sequences (DESIGN.md: batch-first).
#pragma once

#include <cstdint>
#include <vector>

namespace hearth::model {

// The largest Batch::output_top_k: enough for any sampler whose top_k fits (Ollama's default
// is 40), small enough that the device selection keeps its candidates in one block.
constexpr int32_t kMaxOutputTopK = 128;

struct Batch {
    std::vector<int32_t> tokens;     // [n_tokens] token ids
    std::vector<int32_t> positions;  // [n_tokens] position of each token in its sequence
    std::vector<int32_t> seq_ids;    // [n_tokens] index into block_tables
    std::vector<uint8_t> output;     // [n_tokens] 1: produce logits (or an embedding) for it
    // [n_seqs] KV block ids of each sequence: position p lives in block_tables[s][p / block_size].
    // Must cover every position up to the largest one of that sequence in this batch.
    std::vector<std::vector<int32_t>> block_tables;
    // 0: ForwardOutput::logits holds the full rows. k > 0 (<= kMaxOutputTopK and <= n_vocab):
    // only each output row's k best candidates come back (ForwardOutput::top_ids/top_logits),
    // so a GPU model copies k ids and logits per row instead of the vocabulary.
    int32_t output_top_k = 0;

    int64_t n_tokens() const { return (int64_t)tokens.size(); }
    void clear() {
        tokens.clear();
        positions.clear();
        seq_ids.clear();
        output.clear();
    }
    void add(int32_t token, int32_t pos, int32_t seq, bool want_output) {
        tokens.push_back(token);
        positions.push_back(pos);
        seq_ids.push_back(seq);
        output.push_back(want_output ? 1 : 0);
    }
};

}  // namespace hearth::model
