// Waits on the ring buffer, a signalfd and two timerfds: maintenance runs on
// the tick, SIGINT/SIGTERM end the loop. Records arrive in batches: the kernel
// wakes the loop only once a quarter of the ring waits (Delivery::kBatched,
// see probes.h), and the drain timer collects the rest every kDrainInterval,
// so a record reaches its handler at most that late. Nothing else polls: an
// idle agent wakes 4 times a second for the drain (one empty ring read each,
// a few microseconds) and once per tick.
#pragma once

#include <bpf/libbpf.h>

#include <chrono>
#include <functional>

namespace imdswatch {

// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts
// afterwards, so only the event loop's signalfd sees them. Call first in main.
void BlockTerminationSignals();

inline constexpr std::chrono::milliseconds kDrainInterval{250};

class EventLoop {
 public:
  using RecordHandler = std::function<void(const void* data, size_t size)>;
  // ringbuf_fd: the events map; tick runs every tick_interval; the ring is
  // drained every drain_interval (0: no drain timer, for Delivery::kPerRecord,
  // where every record wakes the loop itself).
  EventLoop(int ringbuf_fd, RecordHandler on_record, std::function<void()> tick,
            std::chrono::milliseconds tick_interval, std::chrono::milliseconds drain_interval = kDrainInterval);
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
  std::chrono::milliseconds drain_interval_;
  bool stop_ = false;
};

}  // namespace imdswatch
