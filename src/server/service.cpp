#include "server/service.h"

#include <algorithm>
#include <filesystem>

#include "base/sha256.h"
#include "base/sysinfo.h"
#include "base/timer.h"
#include "gguf/gguf.h"
#include "quant/types.h"
#include "runtime/grammar_mask.h"
#include "runtime/tool_mask.h"
#include "store/fit.h"

namespace hearth::server {
namespace {

constexpr int64_t kDefaultNumCtx = 4096;
constexpr int64_t kDefaultStepTokens = 512;

// Fill-in-the-middle markers, by vocabulary convention: prefix, suffix, middle.
struct FimTokens {
    const char* pre;
    const char* suf;
    const char* mid;
};
constexpr FimTokens kFimSets[] = {
    {"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"},   // Qwen2.5-Coder, ...
    {"<fim_prefix>", "<fim_suffix>", "<fim_middle>"},         // StarCoder
    {"<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"},   // DeepSeek-Coder
    {"<PRE>", "<SUF>", "<MID>"},                              // Code Llama
};

runtime::EngineOptions engine_options(const runtime::ModelConfig& cfg) {
    runtime::EngineOptions eo;
    eo.n_ctx = cfg.n_ctx;
    eo.n_parallel = cfg.n_parallel;
    eo.step_tokens = cfg.n_batch > 0 ? cfg.n_batch : kDefaultStepTokens;
    // num_batch bounds every step; without it, prompt-only steps take the model's preference.
    if (cfg.n_batch > 0) eo.solo_step_tokens = cfg.n_batch;
    if (auto t = quant::parse_type_name(cfg.kv_cache_type)) eo.kv_type = *t;
    return eo;
}

// What a plan_kv failure means to the user: num_ctx too large for memory (a request problem,
// not "try again later").
Status plan_error(const Status& s) {
    if (s.code() == StatusCode::resource_exhausted) return error(StatusCode::invalid_argument, s.message());
    return s;
}

// The tool name of an OpenAI function schema ({"type":"function","function":{"name"}}) or a
// bare {"name"} entry; "" when it has none.
std::string tool_name(const nlohmann::ordered_json& t) {
    if (!t.is_object()) return {};
    const auto& f = t.contains("function") && t["function"].is_object() ? t["function"] : t;
    return f.contains("name") && f["name"].is_string() ? f["name"].get<std::string>() : std::string();
}

// tool_choice "none" drops the tools; a tool's name keeps that tool alone and makes a call
// required.
Status apply_tool_choice(TextInput& in) {
    const bool has_tools = in.tools.is_array() && !in.tools.empty();
    if (in.tool_choice.empty() || in.tool_choice == "auto") return {};
    if (in.tool_choice == "none") {
        in.tools = nullptr;
        in.tool_choice = "auto";
        return {};
    }
    if (!has_tools) return error(StatusCode::invalid_argument, "tool_choice \"" + in.tool_choice + "\" needs tools");
    if (in.tool_choice == "required") return {};
    nlohmann::ordered_json keep = nlohmann::ordered_json::array();
    for (const auto& t : in.tools)
        if (tool_name(t) == in.tool_choice) keep.push_back(t);
    if (keep.empty())
        return error(StatusCode::invalid_argument, "tool_choice names \"" + in.tool_choice + "\" but no tool has that name");
    in.tools = std::move(keep);
    in.tool_choice = "required";
    return {};
}

}  // namespace

int http_status(const Status& s) {
    switch (s.code()) {
    case StatusCode::ok: return 200;
    case StatusCode::invalid_argument:
    case StatusCode::out_of_range:
    case StatusCode::unsupported: return 400;
    case StatusCode::not_found: return 404;
    case StatusCode::resource_exhausted: return 503;
    case StatusCode::corrupt:
    case StatusCode::io_error:
    case StatusCode::internal: return 500;
    }
    return 500;
}

// ---- Generation ---------------------------------------------------------------------------------

struct Generation::Shared {
    std::mutex mu;
    std::condition_variable cv;
    // ---- under mu ----
    std::deque<runtime::Event> events;  // engine events not yet read
    bool terminal = false;              // the done or error event has been queued
    int64_t first_token_ns = 0;         // when the first text event arrived
};

Generation::~Generation() {
    if (service_ && counted_) service_->unregister(this);
    if (shared_ && id_ != 0) {
        std::unique_lock lk(shared_->mu);
        if (!shared_->terminal) {
            lk.unlock();
            lease_->engine->cancel(id_);
            lk.lock();
            // The engine ends a cancelled request within one step; its callback must not
            // outlive the lease (the model could unload under it).
            shared_->cv.wait(lk, [&] { return shared_->terminal; });
        }
    }
}

void Generation::cancel() {
    if (!shared_ || id_ == 0) return;
    {
        std::lock_guard lk(shared_->mu);
        if (shared_->terminal) return;
    }
    lease_->engine->cancel(id_);
}

Generation::Item Generation::next(std::chrono::milliseconds wait) {
    Item item;
    if (finished_) return item;
    if (ready_) {
        item.kind = Kind::final;
        item.final = std::move(*ready_);
        ready_.reset();
        finished_ = true;
        return item;
    }
    const auto deadline = std::chrono::steady_clock::now() + wait;
    for (;;) {
        runtime::Event e;
        int64_t first_token_ns = 0;
        {
            std::unique_lock lk(shared_->mu);
            if (!shared_->cv.wait_until(lk, deadline, [&] { return !shared_->events.empty(); })) return item;
            e = std::move(shared_->events.front());
            shared_->events.pop_front();
            first_token_ns = shared_->first_token_ns;
        }
        if (e.kind == runtime::Event::Kind::text) {
            chat::ChatDelta d;
            if (parser_) {
                d = parser_->push(e.text);
            } else {
                d.content = std::move(e.text);
            }
            if (drop_thinking_) d.thinking.clear();
            item.delta = Delta{std::move(d.content), std::move(d.thinking), std::move(d.tool_calls), std::move(e.logprobs)};
            if (item.delta.empty()) continue;
            item.kind = Kind::delta;
            return item;
        }
        if (e.kind == runtime::Event::Kind::error) {
            finished_ = true;
            item.kind = Kind::error;
            item.status = e.status;
            return item;
        }
        // done
        Final f;
        f.stats = std::move(e.stats);
        f.done_reason = runtime::done_reason_name(f.stats.done);
        f.load_ns = lease_.acquire_ns();
        f.total_ns = now_ns() - start_ns_;
        if (want_context_) {
            f.context = prompt_;
            const int64_t cut = f.stats.truncated_tokens;
            if (cut > 0 && f.context.size() >= (size_t)(keep_ + cut)) {
                // fit_prompt dropped `cut` tokens after the kept head (as `hearth run` rebuilds it).
                f.context.erase(f.context.begin() + keep_, f.context.begin() + keep_ + cut);
            }
            f.context.insert(f.context.end(), f.stats.tokens.begin(), f.stats.tokens.end());
        }
        Metrics& m = service_->metrics();
        m.add_tokens(f.stats.prompt_tokens, f.stats.cached_tokens, f.stats.generated_tokens, f.stats.generate_ns);
        if (first_token_ns > 0) m.observe_ttft((double)(first_token_ns - start_ns_) / 1e9);
        Delta tail;
        if (parser_) {
            chat::ChatDelta d = parser_->finish();
            if (drop_thinking_) d.thinking.clear();
            tail = Delta{std::move(d.content), std::move(d.thinking), std::move(d.tool_calls), {}};
        }
        if (!tail.empty()) {
            ready_ = std::move(f);
            item.kind = Kind::delta;
            item.delta = std::move(tail);
            return item;
        }
        finished_ = true;
        item.kind = Kind::final;
        item.final = std::move(f);
        return item;
    }
}

// ---- Service ------------------------------------------------------------------------------------

Service::Service(const ServerConfig& config) : config_(config) {}

Service::~Service() {
    begin_shutdown();
    finish_shutdown();
}

Result<std::unique_ptr<Service>> Service::create(const ServerConfig& config) {
    std::unique_ptr<Service> s(new Service(config));
    s->store_ = std::make_unique<store::Store>(config.models_dir.empty() ? store::Store::default_root()
                                                                         : config.models_dir);
    runtime::ModelManagerOptions mo;
    mo.max_loaded = config.max_loaded_models;
    mo.default_keep_alive = config.keep_alive;
    mo.max_queue = config.max_queue;
    mo.budget_bytes = config.memory_budget_bytes;
    Service* self = s.get();
    auto mgr = runtime::ModelManager::create(
        [self](const std::string& name, const runtime::ModelConfig& cfg) { return self->load(name, cfg); },
        [self](const std::string& name, const runtime::ModelConfig& cfg) { return self->estimate(name, cfg); }, mo);
    if (!mgr.ok()) return mgr.status();
    s->manager_ = std::move(mgr).value();
    return s;
}

int64_t Service::default_num_ctx(const store::GgufInfo& info) const {
    int64_t n = config_.context_length > 0 ? config_.context_length : kDefaultNumCtx;
    if (info.n_ctx_train > 0) n = std::min(n, info.n_ctx_train);
    return n;
}

Result<runtime::ModelConfig> Service::model_config(const store::GgufInfo& info, const RequestOptions& o,
                                                   bool embedding) const {
    runtime::ModelConfig c;
    c.n_threads = (int)o.num_thread.value_or(config_.num_thread);
    if (embedding) {
        c.n_ctx = o.num_ctx.value_or(0);  // 0: the embedder's default (the training context, at most 2048)
        return c;
    }
    c.n_ctx = o.num_ctx ? *o.num_ctx : default_num_ctx(info);
    c.n_parallel = config_.num_parallel;
    c.n_batch = o.num_batch.value_or(0);
    c.n_gpu_layers = (int)o.num_gpu.value_or(config_.num_gpu);
    c.tensor_split = config_.tensor_split;
    c.kv_cache_type = config_.kv_cache_type;
    c.use_mlock = o.use_mlock.value_or(false);
    return c;
}

Result<int64_t> Service::estimate(const std::string& name, const runtime::ModelConfig& cfg) {
    HEARTH_ASSIGN(store::ModelRef ref, store_->resolve(name));
    HEARTH_ASSIGN(store::GgufInfo info, store_->info(ref));
    Result<int64_t> mem = read_mem_available();
    auto e = store::estimate_memory(info, engine_options(cfg), mem.ok() ? *mem : 1ll << 30);
    if (!e.ok()) return plan_error(e.status());
    return e->total_bytes();
}

Result<std::shared_ptr<runtime::LoadedModel>> Service::load(const std::string& name, const runtime::ModelConfig& cfg) {
    HEARTH_ASSIGN(store::ModelRef ref, store_->resolve(name));
    auto file = gguf::open_gguf(ref.model_path);
    if (!file.ok()) return file.status();
    if (cfg.use_mlock && (*file)->mapping) HEARTH_TRY((*file)->mapping->lock_in_memory());
    auto tok = tok::Tokenizer::from_gguf(**file);
    if (!tok.ok()) return tok.status().with_context("tokenizer");
    model::LoadOptions lo{cfg.n_threads};
    lo.num_gpu = cfg.n_gpu_layers;
    lo.tensor_split = cfg.tensor_split;
    lo.adapters = ref.adapter_paths;  // the manifest's LoRA layers, applied at load (CPU)
    auto m = model::load_model(*file, lo);
    if (!m.ok()) return m.status();
    {
        const std::string note = (*m)->placement_note();
        std::fprintf(stderr, "hearth serve: %s runs on %s%s%s\n", name.c_str(), (*m)->device_name().c_str(),
                     note.empty() ? "" : ": ", note.c_str());
    }
    auto lm = std::make_shared<runtime::LoadedModel>();
    lm->model = std::shared_ptr<model::Model>(std::move(m).value());
    lm->tokenizer = std::shared_ptr<const tok::Tokenizer>(std::move(tok).value());
    if (lm->model->hparams().n_vocab != lm->tokenizer->n_vocab())
        return error(StatusCode::corrupt, strformat("the tokenizer has %d tokens but the model's embedding has %lld rows",
                                                    lm->tokenizer->n_vocab(), (long long)lm->model->hparams().n_vocab));
    lm->bytes = (int64_t)(*file)->bytes.size();
    if (lm->model->is_embedding()) {
        runtime::EmbedderOptions eo;
        eo.n_ctx = cfg.n_ctx;
        auto e = runtime::Embedder::create(lm->model, lm->tokenizer, eo);
        if (!e.ok()) return e.status();
        lm->embedder = std::move(e).value();
    } else {
        runtime::EngineOptions eo = engine_options(cfg);
        if (config_.kv_disk_bytes > 0) {
            // The disk tier of the prefix cache, keyed by the weights' digest.
            auto digest = store_->weights_digest(ref);
            if (!digest.ok()) return digest.status().with_context("the disk KV cache needs the model's digest");
            eo.spill_root = config_.kv_disk_dir.empty()
                                ? std::filesystem::path(store::Store::default_root()).parent_path().string()
                                : config_.kv_disk_dir;
            eo.model_key = *digest;
            // Adapters change every K/V row: their digests join the key (still a sha256 digest,
            // so the folder name stays short).
            if (!ref.adapter_digests.empty()) {
                std::string all = *digest;
                for (const auto& d : ref.adapter_digests) all += "\n" + d;
                eo.model_key = "sha256:" + sha256_hex(std::string_view(all));
            }
            eo.spill_bytes = config_.kv_disk_bytes;
        }
        auto e = runtime::Engine::create(lm->model, lm->tokenizer, eo);
        if (!e.ok()) return plan_error(e.status());
        lm->engine = std::move(e).value();
        lm->bytes += (int64_t)lm->engine->kv_bytes();
        lm->bytes_vram = lm->model->device_weight_bytes() + (int64_t)lm->engine->kv_device_bytes();
        std::fprintf(stderr, "hearth serve: loaded %s (%s): %s\n", name.c_str(), cfg.to_string().c_str(),
                     lm->engine->kv_note().c_str());
        std::lock_guard lk(mu_);
        engines_[name] = lm->engine;
    }
    return lm;
}

Result<Service::ChatData> Service::chat_data(const store::ModelRef& ref, const store::GgufInfo& info) {
    const std::string& src = info.chat_template.empty() ? std::string(chat::kDefaultTemplate) : info.chat_template;
    const std::string key = ref.model_path + "\n" + sha256_hex(std::string_view(src));
    {
        std::lock_guard lk(mu_);
        if (auto it = chat_cache_.find(key); it != chat_cache_.end()) return it->second;
    }
    auto t = chat::ChatTemplate::parse(src);
    if (!t.ok()) return t.status().with_context("the model's chat template");
    ChatData d;
    d.tmpl = std::make_shared<const chat::ChatTemplate>(std::move(t).value());
    d.format = chat::detect_format(src, chat::FormatHints{info.architecture});
    std::lock_guard lk(mu_);
    if (chat_cache_.size() > 64) chat_cache_.clear();
    chat_cache_[key] = d;
    return d;
}

Result<Service::Prompt> Service::build_prompt(const TextInput& in, const store::ModelRef& ref,
                                               const store::GgufInfo& info, const tok::Tokenizer& tok) {
    Prompt p;
    std::vector<int32_t>& ids = p.ids;
    ids = in.context;
    if (!in.suffix.empty()) {
        const FimTokens* fim = nullptr;
        for (const auto& set : kFimSets)
            if (tok.find_token(set.pre) >= 0 && tok.find_token(set.suf) >= 0 && tok.find_token(set.mid) >= 0) {
                fim = &set;
                break;
            }
        if (!fim) return error(StatusCode::invalid_argument, "model '" + in.model + "' does not support insert (suffix)");
        const std::string text = std::string(fim->pre) + in.prompt + fim->suf + in.suffix + fim->mid;
        const auto t = tok.encode(text, ids.empty() && tok.add_bos(), true);
        ids.insert(ids.end(), t.begin(), t.end());
    } else if (in.raw || (!in.chat && info.chat_template.empty() && !in.template_override)) {
        // Raw prompts, and generate on a model without a chat template (Ollama's default
        // template is the prompt alone).
        const auto t = tok.encode(in.prompt, ids.empty(), true);
        ids.insert(ids.end(), t.begin(), t.end());
        p.want_context = !in.raw;
    } else {
        ChatData cd;
        if (in.template_override) {
            auto t = chat::ChatTemplate::parse(*in.template_override);
            if (!t.ok())
                return error(StatusCode::invalid_argument,
                             "template: " + t.status().message() + " (hearth renders Jinja chat templates)");
            cd.tmpl = std::make_shared<const chat::ChatTemplate>(std::move(t).value());
            cd.format = chat::detect_format(*in.template_override, chat::FormatHints{info.architecture});
        } else {
            HEARTH_ASSIGN(cd, chat_data(ref, info));
        }
        // As Ollama: asking a model for what its template cannot express is an error, not a
        // silent no-op.
        chat::Think think = in.think;
        if (think.mode == chat::Think::Mode::on && !cd.format.has_thinking()) {
            if (!in.think_if_supported)
                return error(StatusCode::invalid_argument, "\"" + in.model + "\" does not support thinking");
            think = chat::Think{};
        }
        const std::string& tmpl_src = in.template_override ? *in.template_override
                                      : info.chat_template.empty() ? std::string(chat::kDefaultTemplate)
                                                                   : info.chat_template;
        if (in.tools.is_array() && !in.tools.empty() && tmpl_src.find("tools") == std::string::npos)
            return error(StatusCode::invalid_argument, "\"" + in.model + "\" does not support tools");
        nlohmann::ordered_json messages = nlohmann::ordered_json::array();
        const std::string& system = in.system.empty() ? ref.system : in.system;
        // The model's MESSAGE layers (a few-shot history) come after the system prompt and
        // before the request's own messages, as Ollama puts them.
        auto model_messages = [&] {
            if (!ref.messages.is_array()) return;
            for (const auto& m : ref.messages) messages.push_back(nlohmann::ordered_json(m));
        };
        if (in.chat) {
            const bool has_system = std::any_of(in.messages.begin(), in.messages.end(), [](const auto& m) {
                return m.contains("role") && m["role"] == "system";
            });
            if (!has_system && !ref.system.empty()) messages.push_back({{"role", "system"}, {"content", ref.system}});
            size_t i = 0;
            for (; i < in.messages.size() && in.messages[i].value("role", "") == "system"; ++i) messages.push_back(in.messages[i]);
            model_messages();
            for (; i < in.messages.size(); ++i) messages.push_back(in.messages[i]);
        } else {
            if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
            model_messages();
            messages.push_back({{"role", "user"}, {"content", in.prompt}});
        }
        chat::PromptOptions po;
        po.add_generation_prompt = !(in.chat && !messages.empty() && messages.back().value("role", "") == "assistant");
        po.think = think;
        po.bos_token = tok.bos() >= 0 ? tok.token_text(tok.bos()) : "";
        po.eos_token = tok.eos() >= 0 ? tok.token_text(tok.eos()) : "";
        po.vocab_adds_bos = tok.add_bos();
        auto r = chat::render_prompt(*cd.tmpl, cd.format, messages, in.tools, po);
        if (!r.ok()) return error(StatusCode::invalid_argument, "the chat template failed: " + r.status().message());
        const auto t = tok.encode(r->text, ids.empty() && tok.add_bos(), true);
        ids.insert(ids.end(), t.begin(), t.end());
        p.format_stops = cd.format.stop;
        for (const auto& text : cd.format.preserved_tokens)
            if (const int32_t id = tok.find_token(text); id >= 0) p.preserve.push_back(id);
        p.thinking_open = r->thinking_open;
        if (r->thinking_open || (think.mode == chat::Think::Mode::on && !cd.format.think_start.empty()))
            p.think_end = cd.format.think_end;
        p.chat_format = std::move(cd.format);
        p.want_context = !in.chat;
    }
    return p;
}

Result<int64_t> Service::count_prompt_tokens(TextInput in) {
    HEARTH_ASSIGN(store::ModelRef ref, store_->resolve(in.model));
    HEARTH_ASSIGN(store::GgufInfo info, store_->info(ref));
    if (info.embedding) return error(StatusCode::invalid_argument, "\"" + in.model + "\" does not support chat");
    HEARTH_TRY(apply_tool_choice(in));
    HEARTH_ASSIGN(auto tok, tokenizer_for(in.model));
    HEARTH_ASSIGN(Prompt p, build_prompt(in, ref, info, *tok));
    return (int64_t)p.ids.size();
}

Result<std::unique_ptr<Generation>> Service::generate(TextInput in) {
    const int64_t start = now_ns();
    {
        std::lock_guard lk(mu_);
        if (stopping_) return error(StatusCode::resource_exhausted, "the server is shutting down");
    }
    HEARTH_ASSIGN(store::ModelRef ref, store_->resolve(in.model));
    HEARTH_ASSIGN(store::GgufInfo info, store_->info(ref));
    const char* what = in.chat ? "chat" : "generate";
    if (info.embedding) return error(StatusCode::invalid_argument, "\"" + in.model + "\" does not support " + what);
    RequestOptions opts;
    if (Status s = apply_options(ref.params, opts); !s.ok()) return s.with_context("the model's parameters");
    HEARTH_TRY(apply_options(in.options, opts));
    HEARTH_TRY(validate_options(opts));
    HEARTH_ASSIGN(runtime::ModelConfig cfg, model_config(info, opts, false));

    HEARTH_TRY(apply_tool_choice(in));

    std::unique_ptr<Generation> g(new Generation());
    g->service_ = this;
    g->model_name_ = ref.name;
    g->start_ns_ = start;
    const bool empty = in.chat ? in.messages.empty() : (in.prompt.empty() && in.suffix.empty());
    if (empty && in.keep_alive && in.keep_alive->count() == 0) {
        manager_->unload(ref.name);
        Final f;
        f.done_reason = "unload";
        f.total_ns = now_ns() - start;
        g->ready_ = std::move(f);
        return g;
    }
    HEARTH_ASSIGN(g->lease_, manager_->acquire(ref.name, cfg, in.keep_alive));
    const runtime::LoadedModel& lm = *g->lease_;
    if (!lm.engine) return error(StatusCode::invalid_argument, "\"" + in.model + "\" does not support " + what);
    if (empty) {
        Final f;
        f.done_reason = "load";
        f.load_ns = g->lease_.acquire_ns();
        f.total_ns = now_ns() - start;
        g->ready_ = std::move(f);
        return g;
    }
    const tok::Tokenizer& tok = *lm.tokenizer;

    HEARTH_ASSIGN(Prompt prompt, build_prompt(in, ref, info, tok));
    std::vector<int32_t> ids = std::move(prompt.ids);
    const std::string& think_end = prompt.think_end;
    const std::optional<chat::ChatFormat>& chat_format = prompt.chat_format;
    g->want_context_ = prompt.want_context;
    if (chat_format) {
        chat::ParserOptions popt;
        popt.tools = in.tools;
        g->parser_.emplace(*chat_format, prompt.thinking_open, popt);
        g->drop_thinking_ = in.think.mode == chat::Think::Mode::off;
    }
    if (ids.empty()) return error(StatusCode::invalid_argument, "the prompt is empty");
    const int64_t n_ctx = lm.engine->n_ctx();
    if ((int64_t)ids.size() >= n_ctx && !in.truncate)
        return error(StatusCode::out_of_range,
                     strformat("the prompt is %zu tokens, more than the context holds (num_ctx %lld, with room for one "
                               "generated token): shorten it, raise num_ctx, or set \"truncate\": true",
                               ids.size(), (long long)n_ctx));

    runtime::Request req;
    req.prompt = ids;
    req.sampling = opts.sampling;
    req.num_predict = opts.num_predict < -1 ? -1 : opts.num_predict;
    req.stop = opts.stop;
    req.stop.insert(req.stop.end(), prompt.format_stops.begin(), prompt.format_stops.end());
    req.preserve_tokens = std::move(prompt.preserve);
    req.truncate = in.truncate;
    req.logprobs = in.logprobs;
    req.top_logprobs = in.top_logprobs;
    req.keep = opts.num_keep && *opts.num_keep >= 0 ? *opts.num_keep : (tok.bos() >= 0 && tok.add_bos() ? 1 : 0);
    g->keep_ = std::min<int64_t>(req.keep, (int64_t)ids.size());
    const bool has_tools = chat_format && in.tools.is_array() && !in.tools.empty();
    if (in.tool_choice == "required" && !has_tools)
        return error(StatusCode::invalid_argument, "tool_choice \"required\" needs a chat template (not raw) and tools");
    if (in.tool_choice == "required" && !in.format.is_null())
        return error(StatusCode::invalid_argument, "a required tool call and a response format cannot both constrain the answer");
    if (has_tools && in.format.is_null()) {
        // Tool calls are held to the tools' schemas: from the first token when a call is required,
        // else from the call's opening marker on (a lazy mask). "auto" on a call format the mask
        // does not know stays free text; a required call there is an error.
        auto inner = runtime::make_tool_call_mask(tok, *chat_format, in.tools, in.tool_choice == "required");
        if (inner.ok()) {
            if (think_end.empty()) req.mask = std::move(inner).value();
            else req.mask = runtime::make_deferred_mask(tok, std::move(inner).value(), think_end, /*end_before_marker=*/true);
        } else if (in.tool_choice == "required") {
            return error(StatusCode::invalid_argument, "tool_choice \"required\": " + inner.status().message());
        }
    }
    if (!in.format.is_null()) {
        // The grammar applies to the answer: a model that thinks first is free until its
        // thinking block closes (runtime::make_deferred_mask).
        auto gbnf = chat::format_to_gbnf(in.format);
        if (!gbnf.ok()) return error(StatusCode::invalid_argument, "format: " + gbnf.status().message());
        auto inner = runtime::make_grammar_mask_for(runtime::TokenTable::get(tok), *gbnf);
        if (!inner.ok()) return error(StatusCode::invalid_argument, "format: " + inner.status().message());
        if (think_end.empty()) req.mask = std::move(inner).value();
        else req.mask = runtime::make_deferred_mask(tok, std::move(inner).value(), think_end);
    }
    g->prompt_ = std::move(ids);

    // HEARTH_MAX_QUEUE bounds the requests waiting for a sequence slot too, not only those
    // waiting for a model (the manager's queue): a full queue answers 503 at once.
    if (lm.engine->pool_stats().n_waiting + manager_->queue_length() >= config_.max_queue)
        return error(StatusCode::resource_exhausted,
                     strformat("server busy: %d requests are waiting (HEARTH_MAX_QUEUE=%d); try again shortly",
                               lm.engine->pool_stats().n_waiting + manager_->queue_length(), config_.max_queue));
    auto shared = std::make_shared<Generation::Shared>();
    g->shared_ = shared;
    {
        std::lock_guard lk(mu_);
        if (stopping_) return error(StatusCode::resource_exhausted, "the server is shutting down");
        live_.insert(g.get());
        g->counted_ = true;
        metrics_.set_streams((int)live_.size());
    }
    g->id_ = lm.engine->submit(std::move(req), [shared](const runtime::Event& e) {
        std::lock_guard lk(shared->mu);
        if (e.kind == runtime::Event::Kind::text && shared->first_token_ns == 0) shared->first_token_ns = now_ns();
        if (e.kind != runtime::Event::Kind::text) shared->terminal = true;
        shared->events.push_back(e);
        shared->cv.notify_all();
    });
    return g;
}

void Service::unregister(Generation* g) {
    std::lock_guard lk(mu_);
    live_.erase(g);
    metrics_.set_streams((int)live_.size());
}

Result<EmbedOutput> Service::embed(EmbedInput in) {
    const int64_t start = now_ns();
    {
        std::lock_guard lk(mu_);
        if (stopping_) return error(StatusCode::resource_exhausted, "the server is shutting down");
    }
    HEARTH_ASSIGN(store::ModelRef ref, store_->resolve(in.model));
    HEARTH_ASSIGN(store::GgufInfo info, store_->info(ref));
    if (!info.embedding) return error(StatusCode::invalid_argument, "\"" + in.model + "\" does not support embeddings");
    RequestOptions opts;
    if (Status s = apply_options(ref.params, opts); !s.ok()) return s.with_context("the model's parameters");
    HEARTH_TRY(apply_options(in.options, opts));
    HEARTH_TRY(validate_options(opts));
    HEARTH_ASSIGN(runtime::ModelConfig cfg, model_config(info, opts, true));
    EmbedOutput out;
    out.model = ref.name;
    if (in.inputs.empty() && in.keep_alive && in.keep_alive->count() == 0) {
        manager_->unload(ref.name);
        out.total_ns = now_ns() - start;
        return out;
    }
    HEARTH_ASSIGN(runtime::Lease lease, manager_->acquire(ref.name, cfg, in.keep_alive));
    out.load_ns = lease.acquire_ns();
    if (!lease->embedder) return error(StatusCode::invalid_argument, "\"" + in.model + "\" does not support embeddings");
    if (!in.inputs.empty()) {
        runtime::EmbedRequestOptions ro;
        ro.truncate = in.truncate;
        ro.dimensions = in.dimensions;
        ro.normalize = in.normalize;
        HEARTH_ASSIGN(out.result, lease->embedder->embed(std::span<const std::string>(in.inputs), ro));
        metrics_.add_tokens(out.result.prompt_tokens_total, 0, 0, 0);
    }
    out.total_ns = now_ns() - start;
    return out;
}

Result<std::shared_ptr<const tok::Tokenizer>> Service::tokenizer_for(const std::string& model) {
    HEARTH_ASSIGN(store::ModelRef ref, store_->resolve(model));
    {
        std::lock_guard lk(mu_);
        if (auto it = tok_cache_.find(ref.model_path); it != tok_cache_.end()) return it->second;
    }
    auto file = gguf::open_gguf(ref.model_path);
    if (!file.ok()) return file.status();
    auto tok = tok::Tokenizer::from_gguf(**file);
    if (!tok.ok()) return tok.status().with_context("tokenizer");
    std::shared_ptr<const tok::Tokenizer> t(std::move(tok).value());
    std::lock_guard lk(mu_);
    if (tok_cache_.size() >= 8) tok_cache_.erase(tok_cache_.begin());
    tok_cache_[ref.model_path] = t;
    return t;
}

Result<std::vector<int32_t>> Service::tokenize(const std::string& model, const std::string& text, bool add_special) {
    HEARTH_ASSIGN(auto tok, tokenizer_for(model));
    return tok->encode(text, add_special, true);
}

Result<std::string> Service::detokenize(const std::string& model, const std::vector<int32_t>& tokens) {
    HEARTH_ASSIGN(auto tok, tokenizer_for(model));
    for (int32_t t : tokens)
        if (t < 0 || t >= tok->n_vocab())
            return error(StatusCode::invalid_argument,
                         strformat("token %d is outside the vocabulary (size %d)", t, tok->n_vocab()));
    return tok->decode(tokens, /*render_special=*/false);
}

std::vector<ModelGauges> Service::model_gauges() {
    std::vector<std::pair<std::string, std::shared_ptr<runtime::Engine>>> engines;
    {
        std::lock_guard lk(mu_);
        for (auto it = engines_.begin(); it != engines_.end();) {
            if (auto e = it->second.lock()) {
                engines.emplace_back(it->first, std::move(e));
                ++it;
            } else {
                it = engines_.erase(it);
            }
        }
    }
    std::vector<ModelGauges> out;
    for (const auto& [name, e] : engines) {
        const runtime::PoolStats p = e->pool_stats();
        out.push_back({name, p.n_blocks, p.n_used, p.n_cached, p.n_running, p.n_waiting});
    }
    // The last reference to an engine unloaded meanwhile may be dropped here, on this (HTTP)
    // thread: allowed, it is not an engine callback.
    return out;
}

int Service::n_live() {
    std::lock_guard lk(mu_);
    return (int)live_.size();
}

void Service::begin_shutdown() {
    std::lock_guard lk(mu_);
    stopping_ = true;
    for (Generation* g : live_) g->cancel();
}

void Service::finish_shutdown() {
    if (manager_) manager_->shutdown();
}

}  // namespace hearth::server
