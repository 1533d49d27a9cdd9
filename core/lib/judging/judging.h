// What a stage does with a judge: create it from the stage's options, ask it through the results store's
// judgment cache, and count what happened. Header-only and torch-free; benchmarks and `annotate` use it.
//
// The cache key is the judge's identity() plus the exact request (system prompt, user prompt, temperature and
// max-tokens overrides, image paths when there are images) as canonical JSON, so a rerun or a resumed stage never sends the same prompt twice, and a
// changed prompt, judge, temperature or token limit never reuses a reply it should not. A benchmark that asks the
// same request several times on purpose (MM-Vet's num_run) asks run k >= 1 under a key with "run": k, so every run
// gets a reply of its own and is cached on its own; run 0 is the plain key.
#pragma once

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/logger.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/api/plugin_api.h"
#include "core/lib/util/kill_point.h"

namespace mmr {

class JudgeClient {
 public:
  // `spec`: a judge plugin name or a map {plugin: <name>, ...options}.
  JudgeClient(StageContext& ctx, const YAML::Node& spec) : ctx_(ctx) {
    plugin_ = ctx.create(PluginKind::Judge, spec);
    judge_ = dynamic_cast<Judge*>(plugin_.get());
    if (!judge_) throw InternalError("a judge plugin object does not implement mmr::Judge");
    judge_->attach(ctx);
    identity_ = judge_->identity();
  }

  const std::string& identity() const { return identity_; }

  static std::string cache_key(const JudgeRequest& r, int run = 0) {
    nlohmann::ordered_json j;
    j["system"] = r.system;
    j["user"] = r.user;
    j["temperature"] = r.temperature;
    j["max_tokens"] = r.max_tokens;
    if (!r.images.empty()) j["images"] = r.images;  // by path: image files are inputs that do not change
    if (run > 0) j["run"] = run;
    return j.dump();
  }

  // One reply text per request. Cached replies are reused; the others are sent to the judge in one call (the
  // judge bounds its own concurrency) and stored as they come back. If any request got no reply, the replies
  // that did come are kept in the cache and an Error names how many failed and the first reason. `run`: which
  // repetition of the requests this is (see the top of this file).
  std::vector<std::string> ask(const std::vector<JudgeRequest>& requests, int run = 0) {
    return fetch(requests, true, run);
  }
  std::string ask_one(const JudgeRequest& request, int run = 0) { return ask({request}, run).front(); }
  // Sends the uncached requests now, in one call, without counting them as asked: a benchmark whose official
  // loop asks one request at a time (MM-Vet's retries) prefetches the first round concurrently, then asks.
  void prefetch(const std::vector<JudgeRequest>& requests, int run = 0) { fetch(requests, false, run); }

  // A reply the benchmark could not read (counted, reported as judge/unparseable).
  void count_unparseable(int64_t n = 1) { n_unparseable_ += n; }

  // judge/requests (asked by the benchmark), judge/cache_hits (of those, answered from the store), judge/sent
  // (sent to the judge, prefetches included), judge/unparseable as final metrics of the stage.
  void log_metrics(const std::string& prefix = "judge/") {
    ctx_.log_metric(prefix + "requests", static_cast<double>(n_requests_));
    ctx_.log_metric(prefix + "cache_hits", static_cast<double>(n_cache_hits_));
    ctx_.log_metric(prefix + "sent", static_cast<double>(n_sent_));
    ctx_.log_metric(prefix + "unparseable", static_cast<double>(n_unparseable_));
    ctx_.log().info("judge '{}': {} request(s), {} answered from the cache, {} sent, {} unparseable repl(ies)",
                    identity_, n_requests_, n_cache_hits_, n_sent_, n_unparseable_);
  }

 private:
  // What the cache answers, and the requests left to send (each distinct request once).
  struct Lookup {
    std::vector<std::string> replies;        // the cached ones filled in
    std::vector<std::string> keys;           // cache key per request
    std::vector<bool> have;                  // answered from the cache
    std::map<std::string, size_t> to_send;   // key -> index in `send`
    std::vector<JudgeRequest> send;
  };

  Lookup lookup(const std::vector<JudgeRequest>& requests, bool count, int run) {
    Lookup l{std::vector<std::string>(requests.size()), std::vector<std::string>(requests.size()),
             std::vector<bool>(requests.size(), false), {}, {}};
    for (size_t i = 0; i < requests.size(); ++i) {
      l.keys[i] = cache_key(requests[i], run);
      n_requests_ += count;
      if (auto hit = ctx_.cached_judgment(identity_, l.keys[i])) {
        l.replies[i] = *hit;
        l.have[i] = true;
        // A reply this stage prefetched was sent by it, not found from an earlier run.
        n_cache_hits_ += count && !prefetched_.count(l.keys[i]);
      } else if (!l.to_send.count(l.keys[i])) {
        l.to_send.emplace(l.keys[i], l.send.size());
        l.send.push_back(requests[i]);
      }
    }
    return l;
  }

  std::vector<std::string> fetch(const std::vector<JudgeRequest>& requests, bool count, int run) {
    Lookup l = lookup(requests, count, run);
    if (l.send.empty()) return l.replies;
    if (!count)
      for (const auto& entry : l.to_send) prefetched_.insert(entry.first);
    std::vector<std::string> send_keys(l.send.size());
    for (const auto& [key, j] : l.to_send) send_keys[j] = key;
    const std::vector<JudgeReply> got = send_all(l.send, send_keys);
    for (size_t i = 0; i < requests.size(); ++i)
      if (!l.have[i]) l.replies[i] = got[l.to_send.at(l.keys[i])].text;
    return l.replies;
  }

  // Sends in chunks: each chunk's replies are stored before the next is sent, so an interruption (Ctrl-C, a
  // crash) loses at most one chunk of paid-for replies. If any request got no reply, the replies that did come
  // stay cached and an Error names how many failed and the first reason.
  std::vector<JudgeReply> send_all(const std::vector<JudgeRequest>& send, const std::vector<std::string>& keys) {
    std::vector<JudgeReply> got;
    int64_t failed = 0;
    std::string first_error;
    std::unique_ptr<ProgressSink> progress;  // only for more than one chunk: single retries stay quiet
    if (send.size() > kChunk)
      progress = ctx_.progress("judge " + identity_.substr(0, identity_.find(' ')), static_cast<int64_t>(send.size()));
    for (size_t start = 0; start < send.size(); start += kChunk) {
      if (ctx_.stop_requested()) throw Interrupted();
      const size_t end = std::min(send.size(), start + kChunk);
      const std::vector<JudgeRequest> chunk(send.begin() + static_cast<std::ptrdiff_t>(start),
                                            send.begin() + static_cast<std::ptrdiff_t>(end));
      std::vector<JudgeReply> part = judge_->judge(chunk);
      if (part.size() != chunk.size())
        throw InternalError(fmt::format("judge '{}' returned {} replies for {} requests", identity_, part.size(),
                                        chunk.size()));
      n_sent_ += static_cast<int64_t>(chunk.size());
      kill_point("judge.chunk_received");  // the chunk's replies received, none stored: the one window a crash
                                           // costs paid replies (at most one chunk; a rerun asks them again)
      for (size_t k = 0; k < part.size(); ++k) {
        if (part[k].ok) ctx_.store_judgment(identity_, keys[start + k], part[k].text);
        else if (failed++ == 0) first_error = part[k].error;
        got.push_back(std::move(part[k]));
      }
      if (progress) progress->advance(static_cast<int64_t>(chunk.size()));
      kill_point("judge.chunk_stored");
    }
    if (progress) progress->finish();
    if (failed > 0)
      throw Error(fmt::format("judge '{}': {} of {} request(s) got no reply (the {} replies received are cached; "
                              "rerun to resume); first failure: {}", identity_, failed, send.size(),
                              send.size() - static_cast<size_t>(failed), first_error));
    return got;
  }

  static constexpr size_t kChunk = 32;
  StageContext& ctx_;
  std::shared_ptr<Plugin> plugin_;
  Judge* judge_ = nullptr;
  std::string identity_;
  std::set<std::string> prefetched_;
  int64_t n_requests_ = 0, n_cache_hits_ = 0, n_sent_ = 0, n_unparseable_ = 0;
};

}  // namespace mmr
