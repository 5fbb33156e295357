// Pure classification of one metadata request: which call it is (from the
// method and path), which IMDS version it used (from the token header), and
// which SDK family sent it (from the User-Agent). No allocation except the
// role name; safe to call from any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "imdswatch/call.h"

namespace imdswatch {

// Longest role name RoleFromPath returns (IAM role names are at most 64).
inline constexpr size_t kMaxRoleLength = 64;

// The call a request makes. Paths are matched as IMDS matches them:
// case-sensitive, after a "latest" or dated ("2021-03-23", "1.0") version
// segment. A query string or fragment is ignored, duplicate slashes collapse,
// and an absolute-form target ("http://169.254.169.254/latest/...") is
// reduced to its path.
//   PUT  /latest/api/token                              kToken (PUT only)
//        /latest/meta-data/iam/security-credentials[/]  kCredentialsList
//        /latest/meta-data/iam/security-credentials/R   kCredentials
//        /latest/meta-data[/...]                        kMetadata
//        /latest/dynamic[/...]                          kDynamic
//        /latest/user-data[/]                           kUserData
//        /v2/credentials/<id>  (ECS, 169.254.170.2)     kCredentials
//        /v1/credentials       (EKS Pod Identity)       kCredentials
//        anything else                                  kOther
Call ClassifyCall(std::string_view method, std::string_view path);

// The role a kCredentials IMDS path names ("" for every other path, and for
// the container endpoints, whose ids are per task, not roles). At most
// kMaxRoleLength bytes; bytes outside printable ASCII become '_'.
std::string RoleFromPath(std::string_view path);

// v2 for the token PUT and for any request carrying X-aws-ec2-metadata-token.
Version ClassifyVersion(Call call, bool has_token_header);

// SDK family from the User-Agent value. `present` says whether the header was
// sent at all: absent is kUnknown, present but empty or unrecognised kOther.
// Products ("name/version") are matched case-insensitively anywhere in the
// value, since wrappers prepend their own ("APN/1.0 HashiCorp/1.0 ...",
// "m/E aws-sdk-go-v2/..."); the first SDK product wins (aws-cli v1 appends
// "botocore/<v>"), and "curl/" counts only as the first product.
Client ClassifyUserAgent(std::string_view user_agent, bool present);

}  // namespace imdswatch
