// The model thread of `runner serve`. See serve_scheduler.h.
#include "app/serve_scheduler.h"

#include <fmt/format.h>

#include "core/api/error.h"

namespace mmr::serve {

RequestProgress ScheduledRequest::wait(int64_t seen_version, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return progress_.version > seen_version; });
  return progress_;
}

bool ScheduledRequest::over() {
  std::lock_guard<std::mutex> lock(mu_);
  return progress_.finished || progress_.error_status != 0;
}

template <class F>
void ScheduledRequest::update(F&& change) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    change(progress_);
    ++progress_.version;
  }
  cv_.notify_all();
}

Scheduler::Scheduler(ChatModel& model, size_t max_batch, std::shared_ptr<spdlog::logger> log)
    : model_(model), max_batch_(max_batch), log_(std::move(log)), thread_([this] { run(); }) {}

Scheduler::~Scheduler() { stop(); }

void Scheduler::submit(const std::shared_ptr<ScheduledRequest>& request) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      waiting_.push_back(request);
      cv_.notify_all();
      return;
    }
  }
  fail(*request, 503, "the server is shutting down");
}

void Scheduler::cancel(const std::shared_ptr<ScheduledRequest>& request) {
  if (request->cancelled_.exchange(true)) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = waiting_.begin(); it != waiting_.end(); ++it)
      if (*it == request) {
        waiting_.erase(it);
        log_->info("serve: {}: the client went away; dropped from the queue before it started", request->label);
        return;
      }
    cancel_pending_ = true;
  }
  cv_.notify_all();
  log_->info("serve: {}: the client went away; request cancelled", request->label);
}

void Scheduler::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::deque<std::shared_ptr<ScheduledRequest>> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left.swap(waiting_);
  }
  for (auto& r : left) fail(*r, 503, "the server is shutting down");
  for (auto& [id, r] : decoding_) fail(*r, 503, "the server is shutting down");
  decoding_.clear();
  batch_.reset();
}

void Scheduler::run() {
  // The batch is made here: from now on only this thread uses the model.
  try {
    batch_ = model_.start_batch();
  } catch (const std::exception& e) {
    log_->warn("serve: the model's start_batch() failed ({}); generating one request at a time", e.what());
  }
  if (batch_) {
    log_->info("serve: continuous batching, up to {} requests decode together (--max-batch)", max_batch_);
    run_batched();
  } else {
    log_->info("serve: the model has no batch decoding; one request is generated at a time, in arrival order");
    run_one_at_a_time();
  }
}

void Scheduler::fail(ScheduledRequest& r, int status, const std::string& message) {
  r.release_resources();
  r.update([&](RequestProgress& p) {
    p.error_status = status;
    p.error = message;
  });
}

// The client's input (an image that does not decode, a prompt the model cannot take) is a 400; anything else
// is the model's failure, a 500, logged with the request.
void Scheduler::fail_model_error(ScheduledRequest& r, const std::exception& e) {
  if (dynamic_cast<const DataError*>(&e) || dynamic_cast<const ConfigError*>(&e)) return fail(r, 400, e.what());
  log_->error("serve: {}: generation failed in the model plugin: {}", r.label, e.what());
  fail(r, 500, fmt::format("generation failed in the model plugin: {}", e.what()));
}

// The oldest waiting request, or null once stopping; waits while there is none.
std::shared_ptr<ScheduledRequest> Scheduler::next_waiting(std::unique_lock<std::mutex>& lock) {
  cv_.wait(lock, [&] { return stopping_ || !waiting_.empty(); });
  if (stopping_) return nullptr;
  auto r = waiting_.front();
  waiting_.pop_front();
  return r;
}

void Scheduler::run_one_at_a_time() {
  for (;;) {
    std::unique_lock<std::mutex> lock(mu_);
    const std::shared_ptr<ScheduledRequest> r = next_waiting(lock);
    lock.unlock();
    if (!r) return;
    if (r->cancelled()) continue;  // its client went away as it was taken from the queue
    try {
      Generation g = model_.generate({r->sample}, r->config).at(0);
      r->release_resources();
      r->update([&](RequestProgress& p) {
        p.started = p.finished = true;
        p.text = g.text;
        p.result = std::move(g);
      });
    } catch (const std::exception& e) {
      fail_model_error(*r, e);
    }
  }
}

void Scheduler::run_batched() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !waiting_.empty() || !decoding_.empty(); });
      if (stopping_) return;
    }
    cancel_in_batch();
    admit();
    if (!decoding_.empty()) step();
    if (!batch_) return run_one_at_a_time();  // a failed step left no batch to go on with
  }
}

void Scheduler::cancel_in_batch() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!cancel_pending_) return;
    cancel_pending_ = false;
  }
  for (auto it = decoding_.begin(); it != decoding_.end();) {
    if (!it->second->cancelled()) {
      ++it;
      continue;
    }
    batch_->cancel(it->first);
    log_->debug("serve: {}: left the batch", it->second->label);
    it = decoding_.erase(it);
  }
}

// Adds waiting requests while the batch has room; add() reads the prompt (its prefill) before the next step.
void Scheduler::admit() {
  for (;;) {
    std::shared_ptr<ScheduledRequest> r;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ || waiting_.empty() || decoding_.size() >= max_batch_) return;
      r = waiting_.front();
      waiting_.pop_front();
    }
    try {
      batch_->add(r->id, r->sample, r->config);
    } catch (const std::exception& e) {
      fail_model_error(*r, e);
      continue;
    }
    r->release_resources();
    r->update([](RequestProgress& p) { p.started = true; });
    decoding_[r->id] = r;
    // Cancelled while its prompt was read: it leaves at the next look.
    if (r->cancelled()) {
      std::lock_guard<std::mutex> lock(mu_);
      cancel_pending_ = true;
    }
  }
}

// One token for every request in the batch, to their handlers. A step that throws fails the whole batch: which
// request broke it cannot be told, and the batch's state is not to be trusted after it; a new batch follows.
void Scheduler::step() {
  std::vector<BatchEvent> events;
  try {
    events = batch_->step();
  } catch (const std::exception& e) {
    log_->error("serve: a decoding step failed in the model plugin, failing the {} request(s) of the batch: {}",
                decoding_.size(), e.what());
    for (auto& [id, r] : decoding_) fail(*r, 500, fmt::format("generation failed in the model plugin: {}", e.what()));
    decoding_.clear();
    batch_.reset();
    try {
      batch_ = model_.start_batch();
    } catch (const std::exception& again) {
      log_->error("serve: start_batch() failed after a failed step ({}); generating one request at a time",
                  again.what());
    }
    return;
  }
  for (BatchEvent& ev : events) {
    auto it = decoding_.find(ev.id);
    if (it == decoding_.end()) continue;  // cancelled
    const bool finished = ev.finished;
    it->second->update([&](RequestProgress& p) {
      p.text = std::move(ev.text);
      if (!finished) return;
      p.finished = true;
      p.result = std::move(ev.result);
    });
    if (finished) decoding_.erase(it);
  }
}

}  // namespace mmr::serve
