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
                     std::chrono::milliseconds tick_interval)
    : on_record_(std::move(on_record)), tick_(std::move(tick)), tick_interval_(tick_interval) {
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
  Fd timer{timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)};
  Fd ep{epoll_create1(EPOLL_CLOEXEC)};
  if (sig.fd < 0 || timer.fd < 0 || ep.fd < 0) {
    *error = std::string("event loop setup: ") + std::strerror(errno);
    return false;
  }
  auto ms = tick_interval_.count();
  itimerspec spec{};
  spec.it_interval.tv_sec = ms / 1000;
  spec.it_interval.tv_nsec = (ms % 1000) * 1000000;
  spec.it_value = spec.it_interval;
  timerfd_settime(timer.fd, 0, &spec, nullptr);

  enum : uint64_t { kRing, kSignal, kTimer };
  const struct {
    int fd;
    uint64_t tag;
  } watched[] = {{ring_buffer__epoll_fd(ring_), kRing}, {sig.fd, kSignal}, {timer.fd, kTimer}};
  for (const auto& w : watched) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = w.tag;
    if (epoll_ctl(ep.fd, EPOLL_CTL_ADD, w.fd, &ev) != 0) {
      *error = std::string("epoll_ctl: ") + std::strerror(errno);
      return false;
    }
  }
  for (;;) {
    epoll_event events[3];
    int n = epoll_wait(ep.fd, events, 3, -1);
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
        case kTimer: {
          uint64_t expirations;
          (void)!read(timer.fd, &expirations, sizeof(expirations));
          tick_();
          break;
        }
      }
    }
    if (stop_) return true;
  }
}

}  // namespace imdswatch
