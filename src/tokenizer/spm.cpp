#include "tokenizer/spm.h"

#include <unordered_map>
#include <queue>
#include <string>
#include <utility>

#include "tokenizer/utf8.h"

namespace hearth::tok {
namespace {

struct Symbol {
    int prev;
    int next;
    const char* text;
    size_t n;  // bytes; 0 once merged into its left neighbour
};

struct Bigram {
    int left;
    int right;
    float score;
    size_t size;  // bytes of left + right when the bigram was queued; stale if the symbols changed
};

// Highest score first; among equal scores the leftmost pair. The queue must be an
// std::priority_queue with exactly this ordering: ties beyond it are resolved by the heap's
// internal order, and matching llama.cpp's output requires the same heap.
struct BigramLess {
    bool operator()(const Bigram& l, const Bigram& r) const {
        return (l.score < r.score) || (l.score == r.score && l.left > r.left);
    }
};

class SpmSession {
public:
    explicit SpmSession(const Vocab& vocab) : vocab_(vocab) {}

    void encode(std::string_view text, std::vector<int32_t>& out) {
        size_t offs = 0;
        int index = 0;
        while (offs < text.size()) {
            Symbol sym;
            sym.text = text.data() + offs;
            sym.n = std::min(utf8_seq_len(text[offs]), text.size() - offs);
            offs += sym.n;
            sym.prev = index - 1;
            sym.next = offs == text.size() ? -1 : index + 1;
            ++index;
            symbols_.push_back(sym);
        }
        for (int i = 1; i < static_cast<int>(symbols_.size()); ++i) try_add_bigram(i - 1, i);

        while (!queue_.empty()) {
            const Bigram bigram = queue_.top();
            queue_.pop();
            Symbol& left = symbols_[bigram.left];
            Symbol& right = symbols_[bigram.right];
            if (left.n == 0 || right.n == 0 || left.n + right.n != bigram.size) continue;
            left.n += right.n;
            right.n = 0;
            left.next = right.next;
            if (right.next >= 0) symbols_[right.next].prev = bigram.left;
            try_add_bigram(left.prev, bigram.left);
            try_add_bigram(bigram.left, left.next);
        }

        if (symbols_.empty()) return;
        for (int i = 0; i != -1; i = symbols_[i].next) resegment(symbols_[i], out);
    }

private:
    void try_add_bigram(int left, int right) {
        if (left == -1 || right == -1) return;
        scratch_.assign(symbols_[left].text, symbols_[left].n + symbols_[right].n);
        const int32_t id = vocab_.find(scratch_);
        if (id == kNoToken) return;
        queue_.push(Bigram{left, right, vocab_.scores[id], scratch_.size()});
        rev_merge_[scratch_] = {left, right};
    }

    void resegment(const Symbol& sym, std::vector<int32_t>& out) {
        const std::string text(sym.text, sym.n);
        const int32_t id = vocab_.find(text);
        if (id != kNoToken) {
            out.push_back(id);
            return;
        }
        auto it = rev_merge_.find(text);
        if (it == rev_merge_.end()) {
            for (size_t j = 0; j < sym.n; ++j) {
                const int32_t b = vocab_.byte_ids[static_cast<uint8_t>(sym.text[j])];
                if (b != kNoToken) out.push_back(b);
            }
            return;
        }
        const auto [l, r] = it->second;
        resegment(symbols_[l], out);
        resegment(symbols_[r], out);
    }

    const Vocab& vocab_;
    std::vector<Symbol> symbols_;
    std::priority_queue<Bigram, std::vector<Bigram>, BigramLess> queue_;
    std::unordered_map<std::string, std::pair<int, int>> rev_merge_;  // merged text -> the two symbols that formed it (last writer wins)
    std::string scratch_;  // reused bigram text buffer
};

}  // namespace

void spm_encode(const Vocab& vocab, std::string_view text, std::vector<int32_t>& out) {
    SpmSession(vocab).encode(text, out);
}

}  // namespace hearth::tok
