// The model side of `runner serve`: one thread owns the model, HTTP handler threads hand it requests and wait for
// their progress.
//
// With a model that has a DecodeBatch (ChatModel::start_batch), requests decode together, continuous batching: a
// request that arrives while others decode is added before the next step, at most max_batch decode at once and
// the others wait in arrival order. Without one, requests are generated one at a time with generate(), in
// arrival order. A failure inside the model fails the request it belongs to (a failed step: every request of the
// batch) and the scheduler goes on with the next.
#pragma once

#include <spdlog/logger.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/api/chat_api.h"

namespace mmr::serve {

// What a request's handler knows of it at one moment.
struct RequestProgress {
  int64_t version = 0;   // grows with every change
  bool started = false;  // the model took the prompt (batching: it was added; one at a time: it was generated)
  std::string text;      // the reply so far (BatchEvent::text: stop strings not cut yet)
  bool finished = false;
  Generation result;     // once finished
  int error_status = 0;  // non-zero: the request failed with this HTTP status and `error`
  std::string error;
};

// One request, shared by its handler thread and the scheduler thread.
class ScheduledRequest {
 public:
  ScheduledRequest(uint64_t id, std::string label, ChatSample sample, GenerationConfig config,
                   std::shared_ptr<void> resources)
      : id(id), label(std::move(label)), sample(std::move(sample)), config(std::move(config)),
        resources_(std::move(resources)) {}
  // Waits until the progress is newer than `seen_version`, or at most `timeout`; returns it.
  RequestProgress wait(int64_t seen_version, std::chrono::milliseconds timeout);
  bool cancelled() const { return cancelled_; }
  // Finished or failed: nothing more will happen to it.
  bool over();

  const uint64_t id;
  const std::string label;  // the reply's id, for the log: chatcmpl-<n>
  const ChatSample sample;
  const GenerationConfig config;

 private:
  friend class Scheduler;
  // Applies `change` to the progress and wakes the handler.
  template <class F>
  void update(F&& change);
  void release_resources() { resources_.reset(); }

  std::mutex mu_;
  std::condition_variable cv_;
  RequestProgress progress_;
  std::atomic<bool> cancelled_{false};
  std::shared_ptr<void> resources_;  // what the prompt needs until the model has read it (its image folder)
};

class Scheduler {
 public:
  Scheduler(ChatModel& model, size_t max_batch, std::shared_ptr<spdlog::logger> log);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request (it waits its turn in arrival order).
  void submit(const std::shared_ptr<ScheduledRequest>& request);
  // Its client went away: it leaves the queue, or the batch at the next step (a generate() in progress runs to
  // its end and its reply is dropped). Logged at info level.
  void cancel(const std::shared_ptr<ScheduledRequest>& request);
  // Fails every request not finished (503, the server is stopping) and ends the model thread once the step or
  // generate() in progress has returned.
  void stop();

 private:
  void run();
  void run_batched();
  void run_one_at_a_time();
  // Batching: cancels the batch's requests whose client went away, adds waiting ones while there is room, steps.
  void cancel_in_batch();
  void admit();
  void step();
  void fail(ScheduledRequest& r, int status, const std::string& message);
  void fail_model_error(ScheduledRequest& r, const std::exception& e);
  std::shared_ptr<ScheduledRequest> next_waiting(std::unique_lock<std::mutex>& lock);

  ChatModel& model_;
  const size_t max_batch_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<DecodeBatch> batch_;  // null: one generate() per request
  std::map<uint64_t, std::shared_ptr<ScheduledRequest>> decoding_;  // in the batch (model thread only)

  std::mutex mu_;  // guards the queue and the flags below
  std::condition_variable cv_;
  std::deque<std::shared_ptr<ScheduledRequest>> waiting_;
  bool stopping_ = false;
  bool cancel_pending_ = false;  // a decoding request was cancelled: the model thread looks before its next step
  std::thread thread_;
};

}  // namespace mmr::serve
