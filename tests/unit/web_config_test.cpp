// --web.config.file parsing: the exporter-toolkit keys imdswatch serves, the
// bearer-token extension, and an error naming the key for everything else.
#include "imdswatch/web_config.h"

#include <crypt.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "unit/web_test_support.h"

namespace imdswatch {
namespace {

namespace fs = std::filesystem;
using web_test::Bcrypt;
using web_test::TempDir;

// The error ParseWebConfig gives for yaml (relative paths from dir), "" when it parses.
std::string ErrorOf(const std::string& yaml, const std::string& dir) {
  std::string error;
  if (ParseWebConfig(yaml, dir, &error)) return "";
  EXPECT_FALSE(error.empty());
  EXPECT_EQ(error.find('\n'), std::string::npos) << "not one line: " << error;
  return error;
}

// Files a TLS section names (the parser checks only that they are readable).
class WebConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.Write("cert.pem", "cert");
    dir_.Write("key.pem", "key");
    dir_.Write("ca.pem", "ca");
    dir_.Write("token", "secret-token\n");
  }
  // A TLS section that parses, with `more` appended inside it.
  static std::string Tls(const std::string& more = "") {
    return "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n" + more;
  }
  TempDir dir_;
};

TEST_F(WebConfigTest, FullConfigParses) {
  const std::string hash = Bcrypt("s3cret");
  const std::string ca = dir_.Write("pki/ca-bundle.pem", "ca");
  dir_.Write("pki/server.key", "key");
  const std::string yaml = "tls_server_config:\n"
                           "  cert_file: cert.pem\n"
                           "  key_file: pki/server.key\n"
                           "  client_ca_file: " + ca + "\n"
                           "  client_auth_type: RequireAndVerifyClientCert\n"
                           "  min_version: TLS13\n"
                           "  max_version: TLS13\n"
                           "  prefer_server_cipher_suites: true\n"
                           "http_server_config:\n"
                           "  http2: false\n"
                           "  headers:\n"
                           "    X-Frame-Options: deny\n"
                           "    Strict-Transport-Security: max-age=31536000; includeSubDomains\n"
                           "    X-XSS-Protection: ''\n"
                           "basic_auth_users:\n"
                           "  alice: " + hash + "\n"
                           "authorization:\n"
                           "  type: Bearer\n"
                           "  credentials_file: token\n";
  const std::string path = dir_.Write("web.yml", yaml);
  std::string error;
  auto config = LoadWebConfig(path, &error);
  ASSERT_TRUE(config) << error;
  EXPECT_EQ(config->path, path);
  ASSERT_TRUE(config->tls);
  EXPECT_EQ(config->tls->cert_file, dir_.path() + "/cert.pem");
  EXPECT_EQ(config->tls->key_file, dir_.path() + "/pki/server.key");
  EXPECT_EQ(config->tls->client_ca_file, ca);
  EXPECT_EQ(config->tls->client_auth, ClientAuth::kRequireAndVerifyClientCert);
  EXPECT_EQ(config->tls->min_version, 0x0304);
  EXPECT_EQ(config->tls->max_version, 0x0304);
  // In file order; a blank value unsets the header, as exporter-toolkit does.
  const std::vector<std::pair<std::string, std::string>> headers = {
      {"X-Frame-Options", "deny"}, {"Strict-Transport-Security", "max-age=31536000; includeSubDomains"}};
  EXPECT_EQ(config->headers, headers);
  ASSERT_EQ(config->basic_auth_users.size(), 1u);
  EXPECT_EQ(config->basic_auth_users.at("alice"), hash);
  EXPECT_EQ(config->bearer_token_file, dir_.path() + "/token");
  EXPECT_TRUE(config->RequiresAuth());
}

TEST_F(WebConfigTest, DefaultsAndEmptyFile) {
  std::string error;
  auto empty = ParseWebConfig("", dir_.path(), &error);
  ASSERT_TRUE(empty) << error;
  EXPECT_FALSE(empty->tls);
  EXPECT_FALSE(empty->RequiresAuth());
  EXPECT_TRUE(empty->headers.empty());

  auto tls = ParseWebConfig(Tls(), dir_.path(), &error);
  ASSERT_TRUE(tls && tls->tls) << error;
  EXPECT_EQ(tls->tls->client_auth, ClientAuth::kNoClientCert);
  EXPECT_EQ(tls->tls->min_version, 0x0303);  // TLS12, as exporter-toolkit
  EXPECT_EQ(tls->tls->max_version, 0x0304);
  EXPECT_TRUE(tls->tls->client_ca_file.empty());
  EXPECT_FALSE(tls->RequiresAuth());
}

TEST_F(WebConfigTest, ClientAuthTypes) {
  const std::vector<std::pair<std::string, ClientAuth>> cases = {
      {"NoClientCert", ClientAuth::kNoClientCert},
      {"RequestClientCert", ClientAuth::kRequestClientCert},
      {"RequireAnyClientCert", ClientAuth::kRequireAnyClientCert},
      {"RequireClientCert", ClientAuth::kRequireAnyClientCert},  // exporter-toolkit's old name
      {"VerifyClientCertIfGiven", ClientAuth::kVerifyClientCertIfGiven},
      {"RequireAndVerifyClientCert", ClientAuth::kRequireAndVerifyClientCert},
  };
  for (const auto& [name, want] : cases) {
    const std::string ca = want == ClientAuth::kNoClientCert ? "" : "  client_ca_file: ca.pem\n";
    std::string error;
    auto config = ParseWebConfig(Tls(ca + "  client_auth_type: " + name + "\n"), dir_.path(), &error);
    ASSERT_TRUE(config) << name << ": " << error;
    EXPECT_EQ(config->tls->client_auth, want) << name;
  }
}

// A relative config path: its files are still found next to it, and stored absolute.
TEST_F(WebConfigTest, RelativePathsAreTakenFromTheConfigDirectory) {
  dir_.Write("conf/cert.pem", "cert");
  dir_.Write("conf/key.pem", "key");
  dir_.Write("conf/web.yml", Tls());
  const std::string cwd = fs::current_path().string();
  ASSERT_EQ(chdir(dir_.path().c_str()), 0);
  std::string error;
  auto config = LoadWebConfig("conf/web.yml", &error);
  ASSERT_EQ(chdir(cwd.c_str()), 0);
  ASSERT_TRUE(config && config->tls) << error;
  EXPECT_EQ(config->tls->cert_file, dir_.path() + "/conf/cert.pem");
  EXPECT_EQ(config->tls->key_file, dir_.path() + "/conf/key.pem");
  // The same file read from elsewhere does not find the directory's cert.pem.
  EXPECT_EQ(ErrorOf(Tls(), dir_.path() + "/conf"), "");
  EXPECT_NE(ErrorOf(Tls(), dir_.path() + "/nowhere"), "");
}

struct BadCase {
  std::string yaml;
  std::string key;   // the error must start with "key: "
  std::string what;  // and say this
};

void ExpectErrors(const std::vector<BadCase>& cases, const std::string& dir) {
  for (const BadCase& c : cases) {
    const std::string error = ErrorOf(c.yaml, dir);
    EXPECT_EQ(error.rfind(c.key + ": ", 0), 0u) << "for\n" << c.yaml << "the error does not start with '" << c.key
                                                << ": ': " << error;
    EXPECT_NE(error.find(c.what), std::string::npos) << "for\n" << c.yaml << "the error does not say '" << c.what
                                                     << "': " << error;
  }
}

TEST_F(WebConfigTest, UnknownAndUnsupportedKeysAreNamed) {
  const std::vector<BadCase> cases = {
      {"bogus: 1\n", "bogus", "unknown key"},
      {"rate_limit:\n  interval: 1s\n", "rate_limit", "not supported by imdswatch"},
      {"tls_server_config:\n  bogus: 1\n", "tls_server_config.bogus", "unknown key"},
      {"tls_server_config:\n  cert: inline\n", "tls_server_config.cert", "not supported by imdswatch"},
      {"tls_server_config:\n  key: inline\n", "tls_server_config.key", "not supported by imdswatch"},
      {"tls_server_config:\n  client_ca: inline\n", "tls_server_config.client_ca", "not supported by imdswatch"},
      {Tls("  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"), "tls_server_config.cipher_suites",
       "not supported by imdswatch"},
      {Tls("  curve_preferences: [X25519]\n"), "tls_server_config.curve_preferences", "not supported by imdswatch"},
      {Tls("  client_allowed_sans: [a]\n"), "tls_server_config.client_allowed_sans", "not supported by imdswatch"},
      {Tls("  prefer_server_cipher_suites: false\n"), "tls_server_config.prefer_server_cipher_suites",
       "not supported by imdswatch"},
      {Tls("  prefer_server_cipher_suites: maybe\n"), "tls_server_config.prefer_server_cipher_suites",
       "must be true or false"},
      {"http_server_config:\n  bogus: 1\n", "http_server_config.bogus", "unknown key"},
      {"http_server_config:\n  http2: true\n", "http_server_config.http2", "not supported by imdswatch"},
      {"http_server_config:\n  headers:\n    X-Custom: a\n", "http_server_config.headers.X-Custom",
       "cannot be configured"},
      {"http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "http_server_config.headers.X-Frame-Options",
       "is not one of deny, sameorigin"},
      {"http_server_config:\n  headers:\n    X-XSS-Protection: \"1\\nSet-Cookie: a=b\"\n",
       "http_server_config.headers.X-XSS-Protection", "must be one line"},
      {"authorization:\n  credentials: inline\n", "authorization.credentials", "not supported by imdswatch"},
      {"authorization:\n  bogus: 1\n  credentials_file: token\n", "authorization.bogus", "unknown key"},
      {"authorization:\n  type: Basic\n  credentials_file: token\n", "authorization.type", "only Bearer"},
      {"authorization:\n  type: Bearer\n", "authorization.credentials_file", "missing"},
      {"basic_auth_users:\n  alice: s3cret\n", "basic_auth_users.alice", "is not a bcrypt hash"},
      {"basic_auth_users:\n  alice: $1$abcdefgh$abcdefghijklmnopqrstuv\n", "basic_auth_users.alice",
       "is not a bcrypt hash"},
      {"basic_auth_users: [alice]\n", "basic_auth_users", "must be a mapping"},
      {"tls_server_config:\n  key_file: key.pem\n", "tls_server_config.cert_file", "missing"},
      {"tls_server_config:\n  cert_file: cert.pem\n", "tls_server_config.key_file", "missing"},
      {Tls("  client_auth_type: Sometimes\n"), "tls_server_config.client_auth_type", "is not one of"},
      {Tls("  client_auth_type: RequireAndVerifyClientCert\n"), "tls_server_config.client_ca_file",
       "missing: client_auth_type verifies"},
      {Tls("  client_auth_type: VerifyClientCertIfGiven\n"), "tls_server_config.client_ca_file", "missing"},
      {Tls("  client_ca_file: ca.pem\n"), "tls_server_config.client_auth_type", "without a client_auth_type"},
      {Tls("  client_ca_file: ca.pem\n  client_auth_type: NoClientCert\n"), "tls_server_config.client_auth_type",
       "without a client_auth_type"},
  };
  ExpectErrors(cases, dir_.path());
}

TEST_F(WebConfigTest, UnreadableFilesAreNamed) {
  const std::vector<BadCase> cases = {
      {"tls_server_config:\n  cert_file: missing.pem\n  key_file: key.pem\n", "tls_server_config.cert_file",
       "cannot read " + dir_.path() + "/missing.pem: No such file or directory"},
      {"tls_server_config:\n  cert_file: cert.pem\n  key_file: /no/such/key.pem\n", "tls_server_config.key_file",
       "cannot read /no/such/key.pem"},
      {Tls("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: nope.pem\n"),
       "tls_server_config.client_ca_file", "cannot read"},
      {"tls_server_config:\n  cert_file: ''\n  key_file: key.pem\n", "tls_server_config.cert_file",
       "must not be empty"},
      {"tls_server_config:\n  cert_file:\n  key_file: key.pem\n", "tls_server_config.cert_file", "must be a string"},
      {"authorization:\n  credentials_file: missing-token\n", "authorization.credentials_file", "cannot read"},
      {"authorization:\n  credentials_file: empty-token\n", "authorization.credentials_file", "is empty"},
      // A directory passes access(R_OK) but is no file.
      {"tls_server_config:\n  cert_file: " + dir_.path() + "\n  key_file: key.pem\n", "tls_server_config.cert_file",
       "not a regular file"},
  };
  dir_.Write("empty-token", " \n\t\n");
  ExpectErrors(cases, dir_.path());
}

TEST_F(WebConfigTest, BadTlsVersions) {
  const std::vector<BadCase> cases = {
      {Tls("  min_version: TLS14\n"), "tls_server_config.min_version",
       "'TLS14' is not one of TLS10, TLS11, TLS12, TLS13"},
      {Tls("  min_version: tls12\n"), "tls_server_config.min_version", "is not one of"},
      {Tls("  max_version: SSL3\n"), "tls_server_config.max_version", "is not one of"},
      {Tls("  min_version: [TLS12]\n"), "tls_server_config.min_version", "must be a string"},
      {Tls("  min_version: TLS13\n  max_version: TLS12\n"), "tls_server_config.min_version", "above max_version"},
  };
  ExpectErrors(cases, dir_.path());
  std::string error;
  auto config = ParseWebConfig(Tls("  min_version: TLS10\n  max_version: TLS12\n"), dir_.path(), &error);
  ASSERT_TRUE(config) << error;
  EXPECT_EQ(config->tls->min_version, 0x0301);
  EXPECT_EQ(config->tls->max_version, 0x0303);
}

TEST_F(WebConfigTest, BadYamlIsAClearError) {
  std::string error = ErrorOf("tls_server_config:\n  cert_file: [cert.pem\n", dir_.path());
  EXPECT_EQ(error.rfind("not valid YAML: ", 0), 0u) << error;
  EXPECT_NE(error.find("line "), std::string::npos) << "no position: " << error;

  error = ErrorOf("basic_auth_users:\n  alice: a: b\n", dir_.path());
  EXPECT_EQ(error.rfind("not valid YAML: ", 0), 0u) << error;

  error = ErrorOf("just a string\n", dir_.path());
  EXPECT_EQ(error, "the file: must be a mapping");

  error = ErrorOf("tls_server_config: yes\n", dir_.path());
  EXPECT_EQ(error, "tls_server_config: must be a mapping");

  std::string load_error;
  EXPECT_FALSE(LoadWebConfig(dir_.path() + "/no-such.yml", &load_error));
  EXPECT_EQ(load_error, "cannot read " + dir_.path() + "/no-such.yml: No such file or directory");
}

TEST_F(WebConfigTest, BcryptHashes) {
  // htpasswd's $2y$ and Go's $2a$ hashes work as well as libxcrypt's $2b$.
  const std::string hash = Bcrypt("pw");
  for (const char* prefix : {"$2a$", "$2b$", "$2y$"}) {
    const std::string variant = prefix + hash.substr(4);
    std::string error;
    auto config = ParseWebConfig("basic_auth_users:\n  u: '" + variant + "'\n", dir_.path(), &error);
    ASSERT_TRUE(config) << variant << ": " << error;
    EXPECT_EQ(config->basic_auth_users.at("u"), variant);
  }
  // Cost out of range, truncated.
  EXPECT_NE(ErrorOf("basic_auth_users:\n  u: '$2b$03$" + hash.substr(7) + "'\n", dir_.path()), "");
  EXPECT_NE(ErrorOf("basic_auth_users:\n  u: '" + hash.substr(0, 59) + "'\n", dir_.path()), "");
  const std::string error = ErrorOf("basic_auth_users:\n  'a:b': '" + hash + "'\n", dir_.path());
  EXPECT_EQ(error.rfind("basic_auth_users.a:b: ", 0), 0u) << error;
}

}  // namespace
}  // namespace imdswatch
