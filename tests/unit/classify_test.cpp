#include "imdswatch/classify.h"

#include <gtest/gtest.h>

#include <string>

namespace imdswatch {
namespace {

struct CallCase {
  const char* method;
  std::string path;
  Call want;
};

void PrintTo(const CallCase& c, std::ostream* os) { *os << c.method << " " << c.path; }

class ClassifyCallTest : public ::testing::TestWithParam<CallCase> {};

TEST_P(ClassifyCallTest, Classifies) {
  const CallCase& c = GetParam();
  EXPECT_EQ(ToString(ClassifyCall(c.method, c.path)), ToString(c.want)) << c.method << " " << c.path;
}

INSTANTIATE_TEST_SUITE_P(
    Paths, ClassifyCallTest,
    ::testing::Values(
        // the token: PUT only
        CallCase{"PUT", "/latest/api/token", Call::kToken},
        CallCase{"PUT", "/2021-03-23/api/token", Call::kToken},
        CallCase{"PUT", "//latest//api/token", Call::kToken},
        CallCase{"PUT", "/latest/api/token?ttl=1", Call::kToken},
        CallCase{"GET", "/latest/api/token", Call::kOther},
        CallCase{"POST", "/latest/api/token", Call::kOther},
        CallCase{"PUT", "/latest/api/tokens", Call::kOther},
        CallCase{"PUT", "/latest/api/token/extra", Call::kOther},
        // the role list: botocore, Ruby, PHP, Java, JS send the slash; the C++ and .NET SDKs do not
        CallCase{"GET", "/latest/meta-data/iam/security-credentials/", Call::kCredentialsList},
        CallCase{"GET", "/latest/meta-data/iam/security-credentials", Call::kCredentialsList},
        CallCase{"GET", "/latest/meta-data/iam/security-credentials//", Call::kCredentialsList},
        CallCase{"GET", "/latest//meta-data/iam/security-credentials/?x=1", Call::kCredentialsList},
        CallCase{"GET", "http://169.254.169.254/latest/meta-data/iam/security-credentials/", Call::kCredentialsList},
        CallCase{"GET", "/2016-09-02/meta-data/iam/security-credentials/", Call::kCredentialsList},
        // a role's credentials
        CallCase{"GET", "/latest/meta-data/iam/security-credentials/my-app-role", Call::kCredentials},
        CallCase{"GET", "/latest/meta-data/iam/security-credentials/my-app-role/", Call::kCredentials},
        CallCase{"GET", "/latest/meta-data/iam/security-credentials//my-app-role", Call::kCredentials},
        CallCase{"GET", "/latest/meta-data/iam/security-credentials/eks-node-NodeInstanceRole-1AB2?x", Call::kCredentials},
        CallCase{"GET", "/2021-03-23/meta-data/iam/security-credentials/role", Call::kCredentials},
        CallCase{"GET", "http://[fd00:ec2::254]/latest/meta-data/iam/security-credentials/role", Call::kCredentials},
        // container credential endpoints: ECS (169.254.170.2) and EKS Pod Identity (169.254.170.23)
        CallCase{"GET", "/v2/credentials/2a5f0c6e-1d35-4c8e-9b36-7f0a4c1e2d3b", Call::kCredentials},
        CallCase{"GET", "/v1/credentials", Call::kCredentials},
        CallCase{"GET", "/v1/credentials/", Call::kCredentials},
        CallCase{"GET", "/v2/credentials", Call::kOther},
        CallCase{"GET", "/v2/metadata", Call::kOther},
        CallCase{"GET", "/v1/credentials/extra", Call::kOther},
        // other metadata
        CallCase{"GET", "/latest/meta-data/", Call::kMetadata},
        CallCase{"GET", "/latest/meta-data", Call::kMetadata},
        CallCase{"GET", "/latest/meta-data/instance-id", Call::kMetadata},
        CallCase{"GET", "/latest/meta-data/placement/availability-zone", Call::kMetadata},
        CallCase{"GET", "/latest/meta-data/placement/region", Call::kMetadata},
        CallCase{"GET", "/latest/meta-data/iam/info", Call::kMetadata},
        CallCase{"GET", "/latest/meta-data/iam/", Call::kMetadata},
        CallCase{"GET", "/latest/meta-data/IAM/security-credentials/", Call::kMetadata},  // case-sensitive
        CallCase{"GET", "/2021-03-23/meta-data/instance-id", Call::kMetadata},
        CallCase{"GET", "/1.0/meta-data/ami-id", Call::kMetadata},
        CallCase{"GET", "/latest/meta-data#fragment", Call::kMetadata},
        CallCase{"HEAD", "/latest/meta-data/", Call::kMetadata},
        CallCase{"GET", "/latest/dynamic/instance-identity/document", Call::kDynamic},
        CallCase{"GET", "/latest/dynamic", Call::kDynamic},
        CallCase{"GET", "/2021-03-23/dynamic/instance-identity/signature", Call::kDynamic},
        CallCase{"GET", "/latest/user-data", Call::kUserData},
        CallCase{"GET", "/latest/user-data/", Call::kUserData},
        // not IMDS paths
        CallCase{"GET", "", Call::kOther},
        CallCase{"GET", "/", Call::kOther},
        CallCase{"GET", "/latest", Call::kOther},
        CallCase{"GET", "/latest/", Call::kOther},
        CallCase{"GET", "/Latest/meta-data/", Call::kOther},
        CallCase{"GET", "/latest/Meta-Data/", Call::kOther},
        CallCase{"GET", "/meta-data/instance-id", Call::kOther},
        CallCase{"GET", "/v1.0/meta-data/", Call::kOther},
        CallCase{"GET", "/-/meta-data/", Call::kOther},
        CallCase{"GET", "/../meta-data/", Call::kOther},
        CallCase{"GET", "/computeMetadata/v1/instance/service-accounts/default/token", Call::kOther},
        CallCase{"GET", "/metadata/instance?api-version=2021-02-01", Call::kOther},
        CallCase{"GET", "/latest/meta-data-x/", Call::kOther},
        CallCase{"GET", "http://169.254.169.254", Call::kOther},
        CallCase{"GET", "?/latest/meta-data/", Call::kOther}));

TEST(RoleFromPath, NamesTheRoleOfCredentialPaths) {
  EXPECT_EQ(RoleFromPath("/latest/meta-data/iam/security-credentials/my-app-role"), "my-app-role");
  EXPECT_EQ(RoleFromPath("/latest/meta-data/iam/security-credentials/my-app-role/"), "my-app-role");
  EXPECT_EQ(RoleFromPath("//latest/meta-data/iam/security-credentials//my-app-role?x=1"), "my-app-role");
  EXPECT_EQ(RoleFromPath("/2021-03-23/meta-data/iam/security-credentials/a+b=c,d.e@f-g_h"), "a+b=c,d.e@f-g_h");
  EXPECT_EQ(RoleFromPath("http://169.254.169.254/latest/meta-data/iam/security-credentials/r"), "r");
}

TEST(RoleFromPath, EmptyForEveryOtherPath) {
  EXPECT_EQ(RoleFromPath("/latest/meta-data/iam/security-credentials/"), "");
  EXPECT_EQ(RoleFromPath("/latest/meta-data/iam/security-credentials"), "");
  EXPECT_EQ(RoleFromPath("/latest/meta-data/iam/info"), "");
  EXPECT_EQ(RoleFromPath("/latest/api/token"), "");
  EXPECT_EQ(RoleFromPath("/v2/credentials/2a5f0c6e-1d35-4c8e-9b36-7f0a4c1e2d3b"), "");  // a task id, not a role
  EXPECT_EQ(RoleFromPath("/v1/credentials"), "");
  EXPECT_EQ(RoleFromPath("/meta-data/iam/security-credentials/role"), "");
  EXPECT_EQ(RoleFromPath(""), "");
}

TEST(RoleFromPath, BoundedAndPrintable) {
  const std::string long_role(200, 'r');
  EXPECT_EQ(RoleFromPath("/latest/meta-data/iam/security-credentials/" + long_role), std::string(kMaxRoleLength, 'r'));
  EXPECT_EQ(RoleFromPath(std::string("/latest/meta-data/iam/security-credentials/ro\x01le\x7f\xc3\xa9")),
            "ro_le___");
  EXPECT_EQ(RoleFromPath(std::string("/latest/meta-data/iam/security-credentials/a\0b", 46)), "a_b");
}

TEST(ClassifyVersion, TokenPutAndTokenHeaderAreV2) {
  EXPECT_EQ(ClassifyVersion(Call::kToken, false), Version::kV2);
  EXPECT_EQ(ClassifyVersion(Call::kToken, true), Version::kV2);
  EXPECT_EQ(ClassifyVersion(Call::kCredentials, true), Version::kV2);
  EXPECT_EQ(ClassifyVersion(Call::kMetadata, true), Version::kV2);
  EXPECT_EQ(ClassifyVersion(Call::kOther, true), Version::kV2);
  EXPECT_EQ(ClassifyVersion(Call::kCredentials, false), Version::kV1);
  EXPECT_EQ(ClassifyVersion(Call::kCredentialsList, false), Version::kV1);
  EXPECT_EQ(ClassifyVersion(Call::kUserData, false), Version::kV1);
  EXPECT_EQ(ClassifyVersion(Call::kOther, false), Version::kV1);
}

struct UaCase {
  std::string ua;
  Client want;
  bool survives_cut = true;  // recognised from its first IMDS_UA_MAX (64) bytes, all the kernel keeps
};

void PrintTo(const UaCase& c, std::ostream* os) { *os << '"' << c.ua << '"'; }

class ClassifyUserAgentTest : public ::testing::TestWithParam<UaCase> {};

TEST_P(ClassifyUserAgentTest, Classifies) {
  const UaCase& c = GetParam();
  EXPECT_EQ(ToString(ClassifyUserAgent(c.ua, true)), ToString(c.want)) << c.ua;
}

TEST_P(ClassifyUserAgentTest, SameFromTheBytesTheKernelKeeps) {
  const UaCase& c = GetParam();
  // when the SDK product lies past the kept bytes, nothing half-matched is claimed
  const Client want = c.survives_cut ? c.want : Client::kOther;
  EXPECT_EQ(ToString(ClassifyUserAgent(std::string_view(c.ua).substr(0, 64), true)), ToString(want)) << c.ua;
}

TEST_P(ClassifyUserAgentTest, AbsentHeaderIsUnknownWhateverTheBytes) {
  EXPECT_EQ(ClassifyUserAgent(GetParam().ua, false), Client::kUnknown);
}

// Strings as the SDKs build them (see each SDK's IMDS client), or as captured
// in logs of real traffic.
INSTANTIATE_TEST_SUITE_P(
    RealStrings, ClassifyUserAgentTest,
    ::testing::Values(
        // botocore Session.user_agent(): "<name>/<version> Python/<v> <system>/<release> [exec-env/..] [extra]"
        UaCase{"Botocore/1.29.27 Python/3.11.2 Linux/6.1.0-13-amd64", Client::kBotocore},
        UaCase{"Botocore/1.34.0 Python/3.12.1 Linux/5.10.205-195.804.amzn2.x86_64 exec-env/AWS_ECS_EC2",
               Client::kBotocore},
        // boto3 renames the session's agent and appends Botocore/<version>
        UaCase{"Boto3/1.26.27 Python/3.11.2 Linux/6.1.0-13-amd64 Botocore/1.29.27", Client::kBotocore},
        UaCase{"Boto3/1.28.55 Python/3.11.5 Linux/5.15.0", Client::kBotocore},
        // aws-cli v1 (clidriver.py): user_agent_extra = "botocore/<version>"
        UaCase{"aws-cli/1.27.60 Python/3.11.2 Linux/6.1.0-13-amd64 botocore/1.29.60", Client::kAwsCli},
        // aws-cli v2 sends only name/version to IMDS (user_agent(truncate=True))
        UaCase{"aws-cli/2.15.10", Client::kAwsCli},
        UaCase{"aws-cli/2.13.25 Python/3.11.5 Linux/5.15.0 exe/x86_64.ubuntu.22", Client::kAwsCli},
        UaCase{"aws-cli/2.15.10 Python/3.11.6 Linux/6.1.0 exe/x86_64.debian.12 prompt/off command/sts.get-caller-identity",
               Client::kAwsCli},
        // Java v1 VersionInfoUtils template, sent by EC2ResourceFetcher
        UaCase{"aws-sdk-java/1.12.772 Linux/5.10.230 OpenJDK_64-Bit_Server_VM/17.0.13 java/17.0.13 "
               "vendor/Amazon.com_Inc. hadoop-aws/3.3.6",
               Client::kJavaV1},
        UaCase{"aws-internal/3 aws-sdk-java/1.12.414 Linux/5.10.165-126.735.amzn2int.x86_64 "
               "OpenJDK_64-Bit_Server_VM/25.362-b10 java/1.8.0_362 vendor/Oracle_Corporation",
               Client::kJavaV1},
        UaCase{"Hadoop 3.3.2, aws-sdk-java/1.12.262 Linux/5.14.0-362.24.1.el9_3.x86_64 "
               "OpenJDK_64-Bit_Server_VM/11.0.22+7 java/11.0.22 scala/2.12.15",
               Client::kJavaV1},
        UaCase{"aws-sdk-java/unknown-version Linux/5.10.0 OpenJDK_64-Bit_Server_VM/11.0.2 java/11.0.2", Client::kJavaV1},
        // Java v2 SdkUserAgent, sent by the Ec2MetadataClient request builders
        UaCase{"aws-sdk-java/2.20.162 Mac_OS_X/13.5.2 OpenJDK_64-Bit_Server_VM/17.0.8+7-LTS Java/17.0.8 "
               "vendor/Amazon.com_Inc. io/sync http/UrlConnection cfg/retry-mode/legacy",
               Client::kJavaV2},
        UaCase{"aws-sdk-java/2.21.0 Linux/5.10.192-183.736.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.8.1+1-LTS "
               "Java/17.0.8.1 vendor/Amazon.com_Inc.",
               Client::kJavaV2},
        // Go v1 SDKVersionUserAgentHandler: "aws-sdk-go/<v> (<go>; <os>; <arch>)"
        UaCase{"aws-sdk-go/1.44.327 (go1.20.7; linux; amd64)", Client::kGoV1},
        UaCase{"aws-sdk-go/1.44.0 (go1.20.3; linux; amd64) exec-env/AWS_ECS_FARGATE", Client::kGoV1},
        UaCase{"aws-sdk-go/1.12.8 (go1.9; darwin; amd64) APN/1.0 HashiCorp/1.0 Terraform/0.10.0-dev", Client::kGoV1},
        // Go v2 (aws/middleware/user_agent.go); feature metrics ("m/...") may come first
        UaCase{"aws-sdk-go-v2/1.17.3 os/linux lang/go/1.19.5 md/GOOS/linux md/GOARCH/amd64 api/ec2/1.25.0",
               Client::kGoV2},
        UaCase{"m/E aws-sdk-go-v2/1.30.4 os/macos lang/go#1.23.0 md/GOOS#darwin md/GOARCH#arm64 api/s3#1.60.1",
               Client::kGoV2},
        UaCase{"aws-sdk-go-v2/0.27.0 GOOS/linux GOARCH/amd64 GO/go1.15 ec2imds", Client::kGoV2},
        UaCase{"APN/1.0 HashiCorp/1.0 Terraform/1.5.2 (+https://www.terraform.io) terraform-provider-aws/5.7.0 "
               "(+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.18.1 os/linux "
               "lang/go/1.20.5 md/GOOS/linux md/GOARCH/amd64 api/sts/1.19.2",
               Client::kGoV2, false},
        // JS v2 util.userAgent(): "aws-sdk-nodejs/<v> <platform>/<node>" (browser: "aws-sdk-js/2.x")
        UaCase{"aws-sdk-nodejs/2.1450.0 linux/v18.17.1", Client::kJsV2},
        UaCase{"aws-sdk-nodejs/2.1450.0 linux/v18.17.1 exec-env/AWS_Lambda_nodejs18.x", Client::kJsV2},
        UaCase{"aws-sdk-js/2.1450.0", Client::kJsV2},
        // JS v3 (util-user-agent-node); early v3 "aws-sdk-nodejs-v3-<package>/<v> <platform>/<node>"
        UaCase{"aws-sdk-js/3.738.0 ua/2.1 os/other lang/js md/browser#unknown_unknown api/sso-oidc#3.738.0 m/E",
               Client::kJsV3},
        UaCase{"aws-sdk-js/3.895.0", Client::kJsV3},
        UaCase{"AWS-SDK-JS/3.0.0 kiro-ide/1.0.0", Client::kJsV3},
        UaCase{"aws-sdk-nodejs-v3-@aws-sdk/client-dynamodb/1.0.0-rc.2 darwin/v12.16.1", Client::kJsV3},
        UaCase{"aws-sdk-nodejs-v3-client-s3-node/0.1.0 linux/v10.16.0", Client::kJsV3},
        UaCase{"aws-sdk-js-v3/3.450.0", Client::kJsV3},
        // Ruby InstanceProfileCredentials: "aws-sdk-ruby3/#{CORE_GEM_VERSION}"
        UaCase{"aws-sdk-ruby3/3.168.1", Client::kRuby},
        UaCase{"aws-sdk-ruby2/2.11.632", Client::kRuby},
        // PHP InstanceProfileProvider: "aws-sdk-php/<v> " . Guzzle's default_user_agent()
        UaCase{"aws-sdk-php/3.133.6 GuzzleHttp/6.5.5 curl/7.68.0 PHP/7.4.3", Client::kPhp},
        UaCase{"aws-sdk-php/3.283.0 GuzzleHttp/7", Client::kPhp},
        // .NET InternalSDKUtils.BuildUserAgentString, old and ua/2.0 forms
        UaCase{"aws-sdk-dotnet-coreclr/3.7.108.0 aws-sdk-dotnet-core/3.7.108.2 .NET_Core/6.0.20 "
               "OS/Linux_5.15.0-76-generic_#83-Ubuntu_SMP_Thu_Jun_15_19:16:32_UTC_2023 ClientAsync",
               Client::kDotnet},
        UaCase{"aws-sdk-dotnet-coreclr/3.7.305.28 ua/2.0 os/windows#10.0.22631.0 md/ARCH#X64 lang/.NET_Core#8.0.2 "
               "md/aws-sdk-dotnet-core#3.7.302.12",
               Client::kDotnet},
        UaCase{"aws-sdk-dotnet-45/ aws-sdk-dotnet-core/3.3.31.7 .NET_Runtime/4.0 .NET_Framework/4.0", Client::kDotnet},
        UaCase{"aws-sdk-dotnet-coreclr/4.0.9.6 ua/2.1 os/linux#6.1.175.219 md/ARCH#Arm64 api/DynamoDB#4.0.9.6",
               Client::kDotnet},
        // C++ ComputeUserAgentString: "aws-sdk-cpp/<v> <os>/<release> <arch> <compiler>/<v>"
        UaCase{"aws-sdk-cpp/1.11.0 Linux/5.15.0-1019-aws x86_64 GCC/11.2.0", Client::kCpp},
        UaCase{"aws-sdk-cpp/1.9.379 Linux/5.10.0 x86_64 Clang/14.0.6", Client::kCpp},
        // curl, as the first product only
        UaCase{"curl/7.88.1", Client::kCurl},
        UaCase{"curl/8.5.0", Client::kCurl},
        UaCase{"GuzzleHttp/6.5.5 curl/7.68.0 PHP/7.4.3", Client::kOther},
        // present but not an SDK we name
        UaCase{"", Client::kOther},
        UaCase{"   ", Client::kOther},
        UaCase{"python-requests/2.31.0", Client::kOther},
        UaCase{"Go-http-client/1.1", Client::kOther},
        UaCase{"Wget/1.21.3", Client::kOther},
        UaCase{"Ruby", Client::kOther},
        UaCase{"aws-sdk-rust/1.1.7 os/linux lang/rust/1.74.1", Client::kOther},
        UaCase{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)", Client::kOther},
        UaCase{"aws-sdk-go", Client::kOther},  // no "/version": may be a cut-off "aws-sdk-go-v2"
        UaCase{"aws-sdk-javascript/1.0", Client::kOther}));

}  // namespace
}  // namespace imdswatch
