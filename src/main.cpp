// imdswatch: per-pod visibility of instance-metadata calls.
#include <malloc.h>

#include <cstdio>

#include "imdswatch/agent.h"
#include "imdswatch/config.h"
#include "imdswatch/event_loop.h"
#include "imdswatch/logging.h"

int main(int argc, char** argv) {
  // glibc gives every thread that allocates an arena of its own and keeps what is freed there: a scrape's
  // transient copies (MiB at thousands of containers) stayed resident once per HTTP thread (the churn
  // test's RSS grew 20 MiB while it only scraped). Two arenas; big blocks always mmapped, so freeing
  // returns them (a fixed threshold also stops glibc raising it after each free).
  mallopt(M_ARENA_MAX, 2);
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  imdswatch::BlockTerminationSignals();  // before any thread starts
  imdswatch::Command command;
  std::string message;
  bool exit_now = false;
  if (!imdswatch::ParseCommandLine(argc, argv, &command, &message, &exit_now)) {
    std::fprintf(stderr, "imdswatch: %s\n", message.c_str());
    return 2;
  }
  if (exit_now) {
    std::printf("%s\n", message.c_str());
    return 0;
  }
  imdswatch::SetupLogging(command.agent.log_level, command.agent.log_format);
  switch (command.mode) {
    case imdswatch::Mode::kTrace: return imdswatch::RunTrace(command.agent, command.output);
    case imdswatch::Mode::kDoctor: return imdswatch::RunDoctor(command);
    default: break;
  }
  return imdswatch::RunAgent(command.agent);
}
