#include "model/lora.h"

#include <algorithm>

namespace hearth::model {
namespace {

constexpr std::string_view kSuffixA = ".lora_a", kSuffixB = ".lora_b";
constexpr std::string_view kTokenEmbd = "token_embd.weight";

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string shape_of(const int64_t* ne, int n_dims) {
    std::string s = "[";
    for (int d = 0; d < n_dims; ++d) s += (d ? ", " : "") + std::to_string(ne[d]);
    return s + "]";
}

// The pair fits a base tensor of shape ne (ggml order, 2-D): an empty string, else why not.
std::string misfit(const std::string& name, const LoraAdapter::Pair& p, const int64_t* ne) {
    const bool ok = name == kTokenEmbd ? p.b->ne[1] == ne[0] && p.a->ne[1] == ne[1]
                                       : p.a->ne[0] == ne[0] && p.b->ne[1] == ne[1];
    if (ok) return {};
    return "tensor " + name + ": " + name + ".lora_a " + p.a->shape_string() + " and " + name + ".lora_b " +
           p.b->shape_string() + " do not fit its shape " + shape_of(ne, 2) + " (an adapter for another base model?)";
}

ops::MatrixView view_of(const gguf::TensorInfo& t) {
    ops::MatrixView v;
    v.type = t.type;
    v.data = t.data;
    v.n_in = t.ne[0];
    v.n_out = t.ne[1];
    v.row_bytes = quant::row_size(t.type, t.ne[0]);
    return v;
}

}  // namespace

Result<LoraAdapter> read_lora_adapter(std::shared_ptr<const gguf::GgufFile> file, std::string source) {
    auto fail = [&](StatusCode code, const std::string& msg) { return error(code, source + ": " + msg); };
    const gguf::GgufFile& f = *file;
    auto type = f.meta.get_string_or("general.type", "");
    if (!type.ok()) return fail(StatusCode::invalid_argument, type.status().message());
    if (*type != "adapter")
        return fail(StatusCode::invalid_argument,
                    "not a LoRA adapter: general.type is " + (type->empty() ? std::string("missing") : "\"" + *type + "\"") +
                        ", expected \"adapter\"");
    auto adapter_type = f.meta.get_string_or("adapter.type", "");
    if (!adapter_type.ok()) return fail(StatusCode::invalid_argument, adapter_type.status().message());
    if (*adapter_type != "lora")
        return fail(StatusCode::unsupported, "adapter.type is " +
                                                 (adapter_type->empty() ? std::string("missing") : "\"" + *adapter_type + "\"") +
                                                 "; only \"lora\" adapters are supported");
    LoraAdapter a;
    a.source = source;
    a.architecture = f.architecture();
    if (a.architecture.empty()) return fail(StatusCode::invalid_argument, "general.architecture is missing");
    auto alpha = f.meta.get_float_or("adapter.lora.alpha", 0.0);
    if (!alpha.ok()) return fail(StatusCode::invalid_argument, alpha.status().message());
    a.alpha = (float)*alpha;

    for (const gguf::TensorInfo& t : f.tensors) {
        const bool is_a = ends_with(t.name, kSuffixA), is_b = ends_with(t.name, kSuffixB);
        if (!is_a && !is_b) {
            if (ends_with(t.name, "_norm.weight")) {
                a.ignored.push_back(t.name);
                continue;
            }
            return fail(StatusCode::invalid_argument,
                        "tensor " + t.name + " is neither a .lora_a nor a .lora_b tensor (is this a LoRA adapter?)");
        }
        const std::string base = t.name.substr(0, t.name.size() - kSuffixA.size());
        if (t.n_dims != 2)
            return fail(StatusCode::corrupt, "tensor " + t.name + ": expected 2 dimensions, got shape " + t.shape_string());
        if (!quant::can_compute(t.type))
            return fail(StatusCode::unsupported,
                        strformat("tensor %s: type %s is not supported", t.name.c_str(), quant::type_name(t.type)));
        LoraAdapter::Pair& p = a.pairs[base];
        (is_a ? p.a : p.b) = &t;
    }
    for (const auto& [name, p] : a.pairs) {
        if (!p.a || !p.b)
            return fail(StatusCode::corrupt, "tensor " + name + (p.a ? ".lora_a has no .lora_b" : ".lora_b has no .lora_a"));
        const bool flipped = name == kTokenEmbd;
        const int64_t rank_a = flipped ? p.a->ne[0] : p.a->ne[1];
        if (rank_a != p.b->ne[0])
            return fail(StatusCode::corrupt, "tensor " + name + ": the ranks of .lora_a " + p.a->shape_string() +
                                                 " and .lora_b " + p.b->shape_string() + " differ");
    }
    if (a.pairs.empty()) return fail(StatusCode::invalid_argument, "no .lora_a/.lora_b tensor pairs");
    a.file = std::move(file);
    return a;
}

Result<LoraAdapter> open_lora_adapter(const std::string& path) {
    auto f = gguf::open_gguf(path);
    if (!f.ok()) return f.status().with_context("adapter");
    return read_lora_adapter(std::move(f).value(), "adapter " + path);
}

Status check_lora_against(const LoraAdapter& adapter, const gguf::GgufFile& base) {
    const std::string arch = base.architecture();
    if (adapter.architecture != arch)
        return error(StatusCode::invalid_argument, adapter.source + ": it is for architecture " +
                                                       adapter.architecture + ", the model is " +
                                                       (arch.empty() ? std::string("of no architecture") : arch));
    for (const auto& [name, p] : adapter.pairs) {
        const gguf::TensorInfo* t = base.find_tensor(name);
        if (!t)
            return error(StatusCode::invalid_argument, adapter.source + ": tensor " + name +
                                                           " is not in the base model (an adapter for another base model?)");
        if (t->n_dims != 2)
            return error(StatusCode::unsupported, adapter.source + ": tensor " + name + " has shape " +
                                                      t->shape_string() + "; only 2-D weights take LoRA deltas");
        if (std::string why = misfit(name, p, t->ne); !why.empty())
            return error(StatusCode::invalid_argument, adapter.source + ": " + why);
    }
    return {};
}

Status LoraSet::add(LoraAdapter adapter, const std::string& base_arch) {
    if (adapter.architecture != base_arch)
        return error(StatusCode::invalid_argument, adapter.source + ": it is for architecture " +
                                                       adapter.architecture + ", the model is " + base_arch);
    adapters_.push_back(std::move(adapter));
    used_.emplace_back();
    return {};
}

bool LoraSet::has(const std::string& name) const {
    return std::any_of(adapters_.begin(), adapters_.end(), [&](const LoraAdapter& a) { return a.pairs.count(name) > 0; });
}

Status LoraSet::attach(const std::string& name, ops::Weight& w) {
    for (size_t i = 0; i < adapters_.size(); ++i) {
        const LoraAdapter& ad = adapters_[i];
        auto it = ad.pairs.find(name);
        if (it == ad.pairs.end()) continue;
        const LoraAdapter::Pair& p = it->second;
        if (w.ne[2] != 1 || w.ne[3] != 1)
            return error(StatusCode::unsupported, ad.source + ": tensor " + name +
                                                      ": LoRA on expert (3-D) weights is not supported");
        if (std::string why = misfit(name, p, w.ne); !why.empty())
            return error(StatusCode::invalid_argument, ad.source + ": " + why);
        ops::LowRankDelta d;
        d.scale = ad.scale(p);
        if (name == kTokenEmbd) {
            // Flipped pair: lora_a [rank, n_vocab] is B already (n_vocab rows of rank); lora_b
            // [rank, n_embd] is A transposed, so A [rank][n_embd] is built here in f32.
            const int64_t rank = p.rank(), n_embd = p.b->ne[1];
            d.b = view_of(*p.a);
            std::vector<float> row(rank);
            std::vector<float>& at = owned_.emplace_back((size_t)(rank * n_embd));
            const auto& tr = quant::traits(p.b->type);
            const size_t rb = quant::row_size(p.b->type, rank);
            for (int64_t e = 0; e < n_embd; ++e) {
                tr.dequantize_row(p.b->data + e * rb, row.data(), rank);
                for (int64_t r = 0; r < rank; ++r) at[r * n_embd + e] = row[r];
            }
            d.a.type = quant::QuantType::f32;
            d.a.data = reinterpret_cast<const std::byte*>(at.data());
            d.a.n_in = n_embd;
            d.a.n_out = rank;
            d.a.row_bytes = (size_t)n_embd * sizeof(float);
        } else {
            d.a = view_of(*p.a);
            d.b = view_of(*p.b);
        }
        w.deltas.push_back(d);
        used_[i].insert(name);
    }
    return {};
}

Status LoraSet::check_all_used() const {
    for (size_t i = 0; i < adapters_.size(); ++i)
        for (const auto& [name, p] : adapters_[i].pairs)
            if (!used_[i].count(name))
                return error(StatusCode::invalid_argument,
                             adapters_[i].source + ": tensors " + name + ".lora_a/.lora_b adapt " + name +
                                 ", which this model does not have or does not use (an adapter for another base model?)");
    return {};
}

}  // namespace hearth::model
