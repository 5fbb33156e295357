#include "imdswatch/event_decoder.h"

#include <cstring>
#include <type_traits>

namespace imdswatch {

// The layout is a kernel ABI: a change here must be a deliberate one.
static_assert(sizeof(imds_event_hdr) == 32, "imds_event_hdr layout changed");
static_assert(sizeof(imds_connect_event) == 32 + 16 + 16, "imds_connect_event layout changed");
static_assert(sizeof(imds_request_event) == 32 + 8 + 8 + 16 + IMDS_PATH_MAX + IMDS_UA_MAX,
              "imds_request_event layout changed");
static_assert(offsetof(imds_request_event, path) == 64, "imds_request_event.path moved");
static_assert(sizeof(imds_response_event) == 32 + 8 + 8 + 8 + IMDS_EXPIRY_MAX, "imds_response_event layout changed");
static_assert(sizeof(imds_close_event) == 32 + 16 + IMDS_COMM_LEN, "imds_close_event layout changed");
static_assert(sizeof(imds_retrans_event) == 32 + IMDS_COMM_LEN, "imds_retrans_event layout changed");
static_assert(sizeof(imds_parse_error_event) == 32 + 8, "imds_parse_error_event layout changed");
static_assert(std::is_trivially_copyable_v<imds_request_event>);

std::string_view ToString(DecodeError error) {
  switch (error) {
    case DecodeError::kNone: return "none";
    case DecodeError::kTooShort: return "too_short";
    case DecodeError::kUnknownType: return "unknown_type";
    case DecodeError::kBadLength: return "bad_length";
  }
  return "unknown";
}

namespace {

template <typename T>
DecodeError CopyOut(const void* data, size_t size, Event* out) {
  if (size < sizeof(T)) return DecodeError::kTooShort;
  T value;
  std::memcpy(&value, data, sizeof(T));
  *out = value;
  return DecodeError::kNone;
}

}  // namespace

DecodeError DecodeEvent(const void* data, size_t size, Event* out) {
  if (size < sizeof(imds_event_hdr)) return DecodeError::kTooShort;
  uint8_t type;
  std::memcpy(&type, data, sizeof(type));
  DecodeError err;
  switch (type) {
    case IMDS_EV_CONNECT: return CopyOut<imds_connect_event>(data, size, out);
    case IMDS_EV_RETRANS:
      return CopyOut<imds_retrans_event>(data, size, out);
    case IMDS_EV_CLOSE: return CopyOut<imds_close_event>(data, size, out);
    case IMDS_EV_PARSE_ERROR: return CopyOut<imds_parse_error_event>(data, size, out);
    case IMDS_EV_TTL_DROP: return CopyOut<imds_ttl_drop_event>(data, size, out);
    case IMDS_EV_REQUEST:
      err = CopyOut<imds_request_event>(data, size, out);
      if (err == DecodeError::kNone) {
        const auto& req = std::get<imds_request_event>(*out);
        if (req.path_len > IMDS_PATH_MAX || req.ua_len > IMDS_UA_MAX) return DecodeError::kBadLength;
      }
      return err;
    case IMDS_EV_RESPONSE:
      err = CopyOut<imds_response_event>(data, size, out);
      if (err == DecodeError::kNone && std::get<imds_response_event>(*out).expiry_len > IMDS_EXPIRY_MAX)
        return DecodeError::kBadLength;
      return err;
    default: return DecodeError::kUnknownType;
  }
}

const imds_event_hdr& HeaderOf(const Event& event) {
  return std::visit([](const auto& e) -> const imds_event_hdr& { return e.hdr; }, event);
}

}  // namespace imdswatch
