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
