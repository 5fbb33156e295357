#include "imdswatch/event_decoder.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace imdswatch {
namespace {

TEST(EventDecoder, DecodesEachTypeFromUnalignedBytes) {
  imds_request_event req{};
  req.hdr.type = IMDS_EV_REQUEST;
  req.hdr.sock_id = 42;
  req.path_len = 5;
  std::memcpy(req.path, "/x/yz", 5);
  std::vector<char> bytes(sizeof(req) + 1);
  std::memcpy(bytes.data() + 1, &req, sizeof(req));  // deliberately misaligned
  Event ev;
  ASSERT_EQ(DecodeEvent(bytes.data() + 1, sizeof(req), &ev), DecodeError::kNone);
  ASSERT_TRUE(std::holds_alternative<imds_request_event>(ev));
  EXPECT_EQ(HeaderOf(ev).sock_id, 42u);
  EXPECT_EQ(std::string(std::get<imds_request_event>(ev).path, 5), "/x/yz");
}

TEST(EventDecoder, SplitsACallRecordIntoItsRequestAndResponse) {
  imds_call_event call{};
  call.request.hdr.type = IMDS_EV_CALL;
  call.request.hdr.sock_id = 7;
  call.request.seq = 3;
  call.request.path_len = 17;
  std::memcpy(call.request.path, "/latest/api/token", 17);
  call.response.hdr.type = IMDS_EV_RESPONSE;
  call.response.hdr.sock_id = 7;
  call.response.seq = 3;
  call.response.status = 200;
  std::vector<char> bytes(sizeof(call) + 3);
  std::memcpy(bytes.data() + 3, &call, sizeof(call));  // misaligned, as in the ring
  Event ev;
  ASSERT_EQ(DecodeEvent(bytes.data() + 3, sizeof(call), &ev), DecodeError::kNone);
  ASSERT_TRUE(std::holds_alternative<CallEvent>(ev));
  const CallEvent& got = std::get<CallEvent>(ev);
  EXPECT_EQ(HeaderOf(ev).type, IMDS_EV_CALL);
  EXPECT_EQ(got.request.hdr.type, IMDS_EV_REQUEST);
  EXPECT_EQ(got.response.hdr.type, IMDS_EV_RESPONSE);
  EXPECT_EQ(std::string(got.request.path, got.request.path_len), "/latest/api/token");
  EXPECT_EQ(got.response.seq, 3u);
  EXPECT_EQ(got.response.status, 200);

  EXPECT_EQ(DecodeEvent(bytes.data() + 3, sizeof(call) - 1, &ev), DecodeError::kTooShort);
  call.response.expiry_len = IMDS_EXPIRY_MAX + 1;
  EXPECT_EQ(DecodeEvent(&call, sizeof(call), &ev), DecodeError::kBadLength);
  call.response.expiry_len = 0;
  call.request.ua_len = IMDS_UA_MAX + 1;
  EXPECT_EQ(DecodeEvent(&call, sizeof(call), &ev), DecodeError::kBadLength);
}

TEST(EventDecoder, RejectsShortUnknownAndOverlongRecords) {
  Event ev;
  imds_response_event resp{};
  resp.hdr.type = IMDS_EV_RESPONSE;
  EXPECT_EQ(DecodeEvent(&resp, 10, &ev), DecodeError::kTooShort);
  EXPECT_EQ(DecodeEvent(&resp, sizeof(resp) - 1, &ev), DecodeError::kTooShort);
  resp.expiry_len = IMDS_EXPIRY_MAX + 1;
  EXPECT_EQ(DecodeEvent(&resp, sizeof(resp), &ev), DecodeError::kBadLength);
  resp.hdr.type = 99;
  EXPECT_EQ(DecodeEvent(&resp, sizeof(resp), &ev), DecodeError::kUnknownType);
  imds_request_event req{};
  req.hdr.type = IMDS_EV_REQUEST;
  req.path_len = IMDS_PATH_MAX + 1;
  EXPECT_EQ(DecodeEvent(&req, sizeof(req), &ev), DecodeError::kBadLength);
}

}  // namespace
}  // namespace imdswatch
