#include "server/metrics.h"

#include <sstream>

#include "base/status.h"

namespace hearth::server {
namespace {

// Label values escape backslash, quote and newline.
std::string label(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

}  // namespace

void Metrics::count_request(const std::string& endpoint, int status) {
    std::lock_guard lk(mu_);
    ++requests_[{endpoint, status}];
}

void Metrics::add_tokens(int64_t prompt, int64_t cached, int64_t generated, int64_t generate_ns) {
    prompt_tokens_ += prompt;
    cached_tokens_ += cached;
    generated_tokens_ += generated;
    generate_ns_ += generate_ns;
}

void Metrics::observe_ttft(double seconds) {
    std::lock_guard lk(mu_);
    size_t i = 0;
    while (i < kTtftBuckets.size() && seconds > kTtftBuckets[i]) ++i;
    ++ttft_counts_[i];
    ttft_sum_ += seconds;
    ++ttft_count_;
}

std::string Metrics::render(int queue_length, const std::vector<ModelGauges>& models) const {
    std::ostringstream o;
    {
        std::lock_guard lk(mu_);
        o << "# HELP hearth_requests_total HTTP requests by endpoint and status code.\n"
             "# TYPE hearth_requests_total counter\n";
        for (const auto& [key, n] : requests_)
            o << "hearth_requests_total{endpoint=\"" << label(key.first) << "\",status=\"" << key.second << "\"} " << n
              << "\n";
        o << "# HELP hearth_time_to_first_token_seconds Submission to the first generated token.\n"
             "# TYPE hearth_time_to_first_token_seconds histogram\n";
        int64_t cum = 0;
        for (size_t i = 0; i < kTtftBuckets.size(); ++i) {
            cum += ttft_counts_[i];
            o << "hearth_time_to_first_token_seconds_bucket{le=\"" << kTtftBuckets[i] << "\"} " << cum << "\n";
        }
        cum += ttft_counts_.back();
        o << "hearth_time_to_first_token_seconds_bucket{le=\"+Inf\"} " << cum << "\n";
        o << "hearth_time_to_first_token_seconds_sum " << ttft_sum_ << "\n";
        o << "hearth_time_to_first_token_seconds_count " << ttft_count_ << "\n";
    }
    o << "# HELP hearth_prompt_tokens_total Prompt tokens of finished requests (cached ones included).\n"
         "# TYPE hearth_prompt_tokens_total counter\n"
      << "hearth_prompt_tokens_total " << prompt_tokens_.load() << "\n"
      << "# HELP hearth_prompt_cached_tokens_total Prompt tokens reused from the prefix cache.\n"
         "# TYPE hearth_prompt_cached_tokens_total counter\n"
      << "hearth_prompt_cached_tokens_total " << cached_tokens_.load() << "\n"
      << "# HELP hearth_generated_tokens_total Tokens generated.\n"
         "# TYPE hearth_generated_tokens_total counter\n"
      << "hearth_generated_tokens_total " << generated_tokens_.load() << "\n"
      << "# HELP hearth_generate_seconds_total Time spent generating (first to last token), summed over requests.\n"
         "# TYPE hearth_generate_seconds_total counter\n"
      << "hearth_generate_seconds_total " << (double)generate_ns_.load() / 1e9 << "\n"
      << "# HELP hearth_streams Generation requests in flight.\n"
         "# TYPE hearth_streams gauge\n"
      << "hearth_streams " << streams_.load() << "\n"
      << "# HELP hearth_queue_depth Requests waiting for a model to load or for room.\n"
         "# TYPE hearth_queue_depth gauge\n"
      << "hearth_queue_depth " << queue_length << "\n";
    o << "# HELP hearth_models_loaded Models loaded.\n# TYPE hearth_models_loaded gauge\n"
      << "hearth_models_loaded " << models.size() << "\n";
    auto gauge = [&](const char* name, const char* help, auto field) {
        o << "# HELP " << name << " " << help << "\n# TYPE " << name << " gauge\n";
        for (const auto& m : models) o << name << "{model=\"" << label(m.name) << "\"} " << field(m) << "\n";
    };
    gauge("hearth_kv_blocks_total", "KV blocks of the model's pool.", [](const ModelGauges& m) { return m.kv_blocks_total; });
    gauge("hearth_kv_blocks_used", "KV blocks held by running sequences.", [](const ModelGauges& m) { return m.kv_blocks_used; });
    gauge("hearth_kv_blocks_cached", "KV blocks kept for the prefix cache (evictable).",
          [](const ModelGauges& m) { return m.kv_blocks_cached; });
    gauge("hearth_sequences_running", "Sequences being computed.", [](const ModelGauges& m) { return m.running; });
    gauge("hearth_sequences_waiting", "Sequences waiting for a slot or KV blocks.", [](const ModelGauges& m) { return m.waiting; });
    return o.str();
}

}  // namespace hearth::server
