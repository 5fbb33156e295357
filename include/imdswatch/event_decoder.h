// Turns raw ring-buffer records into the typed events of bpf/imdswatch.h.
// Records are copied out with a size check, never cast in place: ring-buffer
// payloads are not aligned for C++ objects.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include "imdswatch.h"

namespace imdswatch {

using Event = std::variant<imds_connect_event, imds_request_event, imds_response_event, imds_close_event,
                           imds_retrans_event, imds_parse_error_event, imds_ttl_drop_event>;

enum class DecodeError { kNone, kTooShort, kUnknownType, kBadLength };
std::string_view ToString(DecodeError error);

// Fills *out and returns kNone, or says why the record is unusable.
DecodeError DecodeEvent(const void* data, size_t size, Event* out);

// The header every event starts with.
const imds_event_hdr& HeaderOf(const Event& event);

}  // namespace imdswatch
