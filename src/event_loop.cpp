#include "imdswatch/event_loop.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace imdswatch {

void BlockTerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

EventLoop::EventLoop(int ringbuf_fd, RecordHandler on_record, std::function<void()> tick,
                     std::chrono::milliseconds tick_interval, std::chrono::milliseconds drain_interval)
    : on_record_(std::move(on_record)),
      tick_(std::move(tick)),
      tick_interval_(tick_interval),
      drain_interval_(drain_interval) {
  ring_ = ring_buffer__new(ringbuf_fd, &EventLoop::OnSample, this, nullptr);
}

EventLoop::~EventLoop() {
  if (ring_) ring_buffer__free(ring_);
}

int EventLoop::OnSample(void* ctx, void* data, size_t size) {
  static_cast<EventLoop*>(ctx)->on_record_(data, size);
  return 0;
}

namespace {

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// A periodic timerfd, or -1.
int PeriodicTimer(std::chrono::milliseconds interval) {
  int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (fd < 0) return -1;
  auto ms = interval.count();
  itimerspec spec{};
  spec.it_interval.tv_sec = ms / 1000;
  spec.it_interval.tv_nsec = (ms % 1000) * 1000000;
  spec.it_value = spec.it_interval;
  if (timerfd_settime(fd, 0, &spec, nullptr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

void ReadExpirations(int fd) {
  uint64_t expirations;
  (void)!read(fd, &expirations, sizeof(expirations));
}

}  // namespace

bool EventLoop::Run(std::string* error) {
  if (!ring_) {
    *error = std::string("ring buffer: ") + std::strerror(errno);
    return false;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  Fd sig{signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK)};
  Fd timer{PeriodicTimer(tick_interval_)};
  Fd drain{drain_interval_.count() > 0 ? PeriodicTimer(drain_interval_) : -1};
  Fd ep{epoll_create1(EPOLL_CLOEXEC)};
  if (sig.fd < 0 || timer.fd < 0 || (drain_interval_.count() > 0 && drain.fd < 0) || ep.fd < 0) {
    *error = std::string("event loop setup: ") + std::strerror(errno);
    return false;
  }

  enum : uint64_t { kRing, kSignal, kTimer, kDrain };
  const struct {
    int fd;
    uint64_t tag;
  } watched[] = {{ring_buffer__epoll_fd(ring_), kRing}, {sig.fd, kSignal}, {timer.fd, kTimer}, {drain.fd, kDrain}};
  for (const auto& w : watched) {
    if (w.fd < 0) continue;  // no drain timer
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = w.tag;
    if (epoll_ctl(ep.fd, EPOLL_CTL_ADD, w.fd, &ev) != 0) {
      *error = std::string("epoll_ctl: ") + std::strerror(errno);
      return false;
    }
  }
  for (;;) {
    epoll_event events[4];
    int n = epoll_wait(ep.fd, events, 4, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      *error = std::string("epoll_wait: ") + std::strerror(errno);
      return false;
    }
    for (int i = 0; i < n; i++) {
      switch (events[i].data.u64) {
        case kRing:
          ring_buffer__consume(ring_);
          break;
        case kSignal:
          ring_buffer__consume(ring_);  // what already arrived is still counted
          return true;
        case kDrain:
          ReadExpirations(drain.fd);
          ring_buffer__consume(ring_);
          break;
        case kTimer:
          ReadExpirations(timer.fd);
          ring_buffer__consume(ring_);  // the tick sees every record that arrived before it
          tick_();
          break;
      }
    }
    if (stop_) {
      ring_buffer__consume(ring_);  // records waiting for the drain timer still count
      return true;
    }
  }
}

}  // namespace imdswatch
