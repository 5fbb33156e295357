// Waits on the ring buffer, a signalfd and a timerfd: records are handled as
// they arrive, maintenance runs on the timer, SIGINT/SIGTERM end the loop.
// Nothing polls: an idle agent sleeps in epoll_wait.
#pragma once

#include <bpf/libbpf.h>

#include <chrono>
#include <functional>

namespace imdswatch {

// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts
// afterwards, so only the event loop's signalfd sees them. Call first in main.
void BlockTerminationSignals();

class EventLoop {
 public:
  using RecordHandler = std::function<void(const void* data, size_t size)>;
  // ringbuf_fd: the events map; tick runs every tick_interval.
  EventLoop(int ringbuf_fd, RecordHandler on_record, std::function<void()> tick,
            std::chrono::milliseconds tick_interval);
  ~EventLoop();
  // Returns when a termination signal arrives (true) or on a fatal error (false, *error set).
  bool Run(std::string* error);
  // Ends Run() after the current callback (from a tick or record handler).
  void Stop() { stop_ = true; }

 private:
  static int OnSample(void* ctx, void* data, size_t size);
  ring_buffer* ring_ = nullptr;
  RecordHandler on_record_;
  std::function<void()> tick_;
  std::chrono::milliseconds tick_interval_;
  bool stop_ = false;
};

}  // namespace imdswatch
