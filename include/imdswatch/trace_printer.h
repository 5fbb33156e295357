// `imdswatch trace`: one line per metadata request, text or JSON.
#pragma once

#include <string>

#include "imdswatch/call_tracker.h"
#include "imdswatch/config.h"

namespace imdswatch {

// wall_start_ns: the call's start on CLOCK_REALTIME.
std::string FormatTraceLine(const CallRecord& call, const Workload& who, uint64_t wall_start_ns,
                            OutputFormat format);

// Offset to add to a CLOCK_MONOTONIC (bpf_ktime_get_ns) stamp to get CLOCK_REALTIME.
int64_t MonotonicToRealtimeOffsetNs();

}  // namespace imdswatch
