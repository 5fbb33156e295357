// The HTTP endpoint under --web.config.file, as clients meet it: a real
// civetweb server on 127.0.0.1, certificates made by the openssl CLI, and curl
// (or openssl s_client) as the client. Also the agent binary's refusal of a
// bad file.
#include <crypt.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "imdswatch/http_server.h"
#include "imdswatch/metrics_writer.h"
#include "imdswatch/web_config.h"
#include "imdswatch/web_security.h"
#include "unit/web_test_support.h"

namespace imdswatch {
namespace {

namespace fs = std::filesystem;
using web_test::Bcrypt;
using web_test::TempDir;


std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct Shell {
  int exit_code;
  std::string output;  // stdout and stderr
};

Shell RunShell(const std::string& command) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return {-1, "popen failed"};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}


std::string Base64(const std::string& text) {
  std::string out(4 * ((text.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  out.resize(n);
  return out;
}

// Two CAs; server-1 and server-2 (127.0.0.1 and localhost) and client from ca, stranger from other-ca.
void MakePki(const std::string& dir) {
  auto run = [&](const std::string& command) {
    Shell r = RunShell("cd " + Quote(dir) + " && " + command);
    ASSERT_EQ(r.exit_code, 0) << command << "\n" << r.output;
  };
  auto key = [&](const std::string& name) {
    run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + name + ".key");
  };
  for (const std::string ca : {"ca", "other-ca"}) {
    key(ca);
    run("openssl req -x509 -new -key " + ca + ".key -out " + ca + ".pem -days 2 -subj /CN=imdswatch-test-" + ca);
  }
  std::ofstream(dir + "/server.ext") << "basicConstraints=critical,CA:FALSE\n"
                                        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                        "extendedKeyUsage=serverAuth\n";
  std::ofstream(dir + "/client.ext") << "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n";
  int serial = 100;
  auto leaf = [&](const std::string& name, const std::string& ca, const std::string& ext) {
    key(name);
    run("openssl req -new -key " + name + ".key -out " + name + ".csr -subj /CN=" + name);
    run("openssl x509 -req -in " + name + ".csr -CA " + ca + ".pem -CAkey " + ca + ".key -set_serial " +
        std::to_string(serial++) + " -days 2 -extfile " + ext + " -out " + name + ".pem");
  };
  leaf("server-1", "ca", "server.ext");
  leaf("server-2", "ca", "server.ext");
  leaf("client", "ca", "client.ext");
  leaf("stranger", "other-ca", "client.ext");
}

// One family, so that /metrics has something to show.
class TinySource : public MetricsSource {
 public:
  void WriteMetrics(MetricsWriter& out) const override {
    out.Family("imdswatch_test_up", "A test gauge", MetricType::kGauge);
    out.Sample("", {}, 1.0);
  }
};

constexpr const char* kMetric = "imdswatch_test_up 1";

struct Response {
  int curl_exit;  // 0: an HTTP answer arrived
  int status;     // 0 without one
  std::string headers;
  std::string body;
  std::string messages;  // curl's errors
};

class WebServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new TempDir();
    MakePki(pki_->path());
  }
  static void TearDownTestSuite() {
    delete pki_;
    pki_ = nullptr;
  }
  static std::string Pki(const std::string& name) { return pki_->File(name); }

  // Serves HttpRoutes with the web config `yaml` (written to this test's directory) on a free port.
  void Start(const std::string& yaml) {
    server_.reset();
    const std::string path = dir_.Write("web.yml", yaml);
    std::string error;
    auto config = LoadWebConfig(path, &error);
    ASSERT_TRUE(config) << error;
    std::shared_ptr<WebSecurity> security = WebSecurity::Create(*config, &error);
    ASSERT_TRUE(security) << error;
    tls_ = security->tls();
    HttpRoutes routes;
    routes.collectables = {source_};
    routes.healthz = [] { return HealthStatus{true, "healthy"}; };
    routes.readyz = [] { return HealthStatus{true, "ready"}; };
    routes.json = {{"/api/v1/diagnoses", [] { return std::string("[]"); }}};
    server_ = HttpServer::Start("127.0.0.1:0", std::move(routes), &error, security);
    ASSERT_TRUE(server_) << error;
    ASSERT_GT(server_->port(), 0);
  }

  std::string Url(const std::string& path, bool https) const {
    return std::string(https ? "https" : "http") + "://127.0.0.1:" + std::to_string(server_->port()) + path;
  }
  std::string Url(const std::string& path) const { return Url(path, tls_); }

  Response Get(const std::string& url, const std::vector<std::string>& args = {}) const {
    const std::string headers = dir_.File("curl.headers"), body = dir_.File("curl.body");
    fs::remove(headers);
    fs::remove(body);
    std::string command = "curl -sS --noproxy '*' --max-time 10 -D " + headers + " -o " + body +
                          " -w '\\ncurl-status=%{http_code}\\n'";
    for (const std::string& a : args) command += " " + Quote(a);
    command += " " + Quote(url);
    const Shell r = RunShell(command);
    Response out{r.exit_code, 0, Read(headers), Read(body), r.output};
    const size_t at = r.output.rfind("curl-status=");
    if (at != std::string::npos) out.status = std::atoi(r.output.c_str() + at + 12);
    return out;
  }
  // curl arguments that trust the test CA.
  static std::vector<std::string> Trusting(std::vector<std::string> more = {}) {
    more.insert(more.begin(), {"--cacert", Pki("ca.pem")});
    return more;
  }
  static std::vector<std::string> WithCert(const std::string& name) {
    return Trusting({"--cert", Pki(name + ".pem"), "--key", Pki(name + ".key")});
  }

  // The subject of the certificate the server shows at a new handshake.
  std::string ServedSubject() const {
    const Shell r = RunShell("openssl s_client -connect 127.0.0.1:" + std::to_string(server_->port()) +
                        " -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -subject");
    return r.exit_code == 0 ? r.output : "no certificate: " + r.output;
  }

  static std::string TlsConfig(const std::string& more = "") {
    return "tls_server_config:\n  cert_file: " + Pki("server-1.pem") + "\n  key_file: " + Pki("server-1.key") +
           "\n" + more;
  }

  static TempDir* pki_;
  TempDir dir_;
  std::shared_ptr<TinySource> source_ = std::make_shared<TinySource>();
  std::unique_ptr<HttpServer> server_;
  bool tls_ = false;
};

TempDir* WebServerTest::pki_ = nullptr;

TEST_F(WebServerTest, TlsServesMetricsToClientsThatTrustTheCa) {
  ASSERT_NO_FATAL_FAILURE(Start(TlsConfig()));
  Response r = Get(Url("/metrics"), Trusting());
  EXPECT_EQ(r.status, 200) << r.messages;
  EXPECT_NE(r.body.find(kMetric), std::string::npos) << r.body;
  EXPECT_EQ(Get(Url("/healthz"), Trusting()).status, 200);
  // By name too (the certificate's DNS name).
  const std::string port = std::to_string(server_->port());
  EXPECT_EQ(Get("https://localhost:" + port + "/metrics", Trusting({"--resolve", "localhost:" + port + ":127.0.0.1"}))
                .status,
            200);

  // Plain HTTP to the TLS port gets nothing.
  r = Get(Url("/metrics", false));
  EXPECT_NE(r.curl_exit, 0);
  EXPECT_NE(r.status, 200);
  EXPECT_EQ(r.body.find(kMetric), std::string::npos);
  // A client that trusts another CA refuses the server (curl: peer certificate cannot be authenticated).
  r = Get(Url("/metrics"), {"--cacert", Pki("other-ca.pem")});
  EXPECT_EQ(r.curl_exit, 60) << r.messages;
  EXPECT_EQ(r.body.find(kMetric), std::string::npos);
}

TEST_F(WebServerTest, MinVersionIsEnforced) {
  ASSERT_NO_FATAL_FAILURE(Start(TlsConfig("  min_version: TLS13\n")));
  EXPECT_EQ(Get(Url("/metrics"), Trusting({"--tlsv1.3"})).status, 200);
  Response r = Get(Url("/metrics"), Trusting({"--tls-max", "1.2"}));
  EXPECT_NE(r.curl_exit, 0) << "TLS 1.2 accepted";
  EXPECT_EQ(r.status, 0);

  ASSERT_NO_FATAL_FAILURE(Start(TlsConfig("  max_version: TLS12\n")));
  EXPECT_EQ(Get(Url("/metrics"), Trusting({"--tls-max", "1.2"})).status, 200);
  EXPECT_NE(Get(Url("/metrics"), Trusting({"--tlsv1.3"})).curl_exit, 0) << "TLS 1.3 accepted";
}

TEST_F(WebServerTest, ClientCertificatePolicies) {
  struct Policy {
    std::string type;
    bool none, stranger, client;  // whether a client without a certificate, with other-ca's, with ca's gets in
  };
  const std::vector<Policy> policies = {
      {"RequireAndVerifyClientCert", false, false, true},
      {"VerifyClientCertIfGiven", true, false, true},
      {"RequireAnyClientCert", false, true, true},
      {"RequestClientCert", true, true, true},
  };
  for (const Policy& p : policies) {
    SCOPED_TRACE(p.type);
    ASSERT_NO_FATAL_FAILURE(
        Start(TlsConfig("  client_auth_type: " + p.type + "\n  client_ca_file: " + Pki("ca.pem") + "\n")));
    const std::vector<std::pair<std::vector<std::string>, bool>> clients = {
        {Trusting(), p.none}, {WithCert("stranger"), p.stranger}, {WithCert("client"), p.client}};
    for (const auto& [args, allowed] : clients) {
      const Response r = Get(Url("/metrics"), args);
      const std::string who = args.size() > 2 ? args[3] : "no certificate";
      if (allowed) {
        EXPECT_EQ(r.status, 200) << who << " refused: " << r.messages;
        EXPECT_NE(r.body.find(kMetric), std::string::npos) << who;
      } else {
        EXPECT_NE(r.curl_exit, 0) << who << " accepted";
        EXPECT_EQ(r.status, 0) << who << " accepted";
        EXPECT_EQ(r.body.find(kMetric), std::string::npos) << who;
      }
    }
  }
}

TEST_F(WebServerTest, BasicAuth) {
  ASSERT_NO_FATAL_FAILURE(
      Start("basic_auth_users:\n  alice: " + Bcrypt("s3cret") + "\n  bob: " + Bcrypt("hunter2") + "\n"));
  Response r = Get(Url("/metrics"), {"-u", "alice:s3cret"});
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find(kMetric), std::string::npos);
  EXPECT_EQ(Get(Url("/metrics"), {"-u", "bob:hunter2"}).status, 200);
  EXPECT_EQ(Get(Url("/metrics"), {"-u", "alice:s3cret"}).status, 200);  // the verdict cache answers alike

  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"-u", "alice:wrong"}, {"-u", "alice:hunter2"}, {"-u", "carol:s3cret"}, {"-u", "alice:"}, {}}) {
    SCOPED_TRACE(args.empty() ? "no Authorization" : args[1]);
    r = Get(Url("/metrics"), args);
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(r.body.find(kMetric), std::string::npos);
    EXPECT_NE(r.headers.find("WWW-Authenticate: Basic realm=\"imdswatch\""), std::string::npos) << r.headers;
    EXPECT_EQ(r.headers.find("WWW-Authenticate: Bearer"), std::string::npos) << r.headers;
  }
  EXPECT_EQ(Get(Url("/metrics"), {"-H", "Authorization: Bearer s3cret"}).status, 401);
  EXPECT_EQ(Get(Url("/api/v1/diagnoses")).status, 401);
  EXPECT_EQ(Get(Url("/api/v1/diagnoses"), {"-u", "alice:s3cret"}).status, 200);
}

TEST_F(WebServerTest, BearerTokenFollowsItsFile) {
  dir_.Write("token", "first-token\n");
  ASSERT_NO_FATAL_FAILURE(Start("authorization:\n  type: Bearer\n  credentials_file: token\n"));
  Response r = Get(Url("/metrics"), {"-H", "Authorization: Bearer first-token"});
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find(kMetric), std::string::npos);
  r = Get(Url("/metrics"), {"-H", "Authorization: Bearer wrong-token"});
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.body.find(kMetric), std::string::npos);
  EXPECT_NE(r.headers.find("WWW-Authenticate: Bearer realm=\"imdswatch\""), std::string::npos) << r.headers;
  EXPECT_EQ(Get(Url("/metrics")).status, 401);
  EXPECT_EQ(Get(Url("/metrics"), {"-H", "Authorization: Bearer first-token-and-more"}).status, 401);
  EXPECT_EQ(Get(Url("/metrics"), {"-u", "first-token:first-token"}).status, 401);

  // A Secret's rotation: a new file renamed into place.
  dir_.Replace("token", "second-token\n");
  EXPECT_EQ(Get(Url("/metrics"), {"-H", "Authorization: Bearer second-token"}).status, 200);
  EXPECT_EQ(Get(Url("/metrics"), {"-H", "Authorization: Bearer first-token"}).status, 401);
  // Rewritten in place, to a token of the same length.
  dir_.Write("token", "third--token\n");
  EXPECT_EQ(Get(Url("/metrics"), {"-H", "Authorization: Bearer third--token"}).status, 200);
  EXPECT_EQ(Get(Url("/metrics"), {"-H", "Authorization: Bearer second-token"}).status, 401);
  // Emptied: nothing gets in until it has a token again.
  dir_.Write("token", "");
  EXPECT_EQ(Get(Url("/metrics"), {"-H", "Authorization: Bearer third--token"}).status, 401);
  EXPECT_EQ(Get(Url("/metrics"), {"-H", "Authorization: Bearer "}).status, 401);
  dir_.Write("token", "fourth-token");
  EXPECT_EQ(Get(Url("/metrics"), {"-H", "Authorization: Bearer fourth-token"}).status, 200);
}

TEST_F(WebServerTest, BasicAndBearerTogether) {
  dir_.Write("token", "the-token");
  ASSERT_NO_FATAL_FAILURE(Start("basic_auth_users:\n  alice: " + Bcrypt("s3cret") +
                                "\nauthorization:\n  credentials_file: token\n"));
  EXPECT_EQ(Get(Url("/metrics"), {"-u", "alice:s3cret"}).status, 200);
  EXPECT_EQ(Get(Url("/metrics"), {"-H", "Authorization: Bearer the-token"}).status, 200);
  const Response r = Get(Url("/metrics"), {"-u", "alice:the-token"});
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.headers.find("WWW-Authenticate: Basic realm=\"imdswatch\""), std::string::npos) << r.headers;
  EXPECT_NE(r.headers.find("WWW-Authenticate: Bearer realm=\"imdswatch\""), std::string::npos) << r.headers;
}

// kubelet probes show no credentials; they must still get through, and only to the probes.
TEST_F(WebServerTest, ProbesStayOpen) {
  dir_.Write("token", "the-token");
  ASSERT_NO_FATAL_FAILURE(Start(TlsConfig() + "basic_auth_users:\n  alice: " + Bcrypt("s3cret") +
                                "\nauthorization:\n  credentials_file: token\n"));
  Response r = Get(Url("/healthz"), Trusting());
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "healthy\n");
  r = Get(Url("/readyz"), Trusting());
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ready\n");
  EXPECT_EQ(Get(Url("/metrics"), Trusting()).status, 401);
  EXPECT_EQ(Get(Url("/api/v1/diagnoses"), Trusting()).status, 401);
  // A path that only starts at a probe reaches nothing else.
  r = Get(Url("/healthz/../metrics"), Trusting({"--path-as-is"}));
  EXPECT_EQ(r.body.find(kMetric), std::string::npos) << r.status;
  r = Get(Url("/healthz/%2e%2e/metrics"), Trusting({"--path-as-is"}));
  EXPECT_EQ(r.body.find(kMetric), std::string::npos) << r.status;
  EXPECT_EQ(Get(Url("/metrics"), Trusting({"-u", "alice:s3cret"})).status, 200);
}

TEST_F(WebServerTest, ExtraHeadersOnEveryAnswer) {
  ASSERT_NO_FATAL_FAILURE(Start("http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
                                "    Strict-Transport-Security: max-age=31536000\n"
                                "    X-Content-Type-Options: nosniff\n"
                                "basic_auth_users:\n  alice: " +
                                Bcrypt("s3cret") + "\n"));
  for (const auto& [path, status, args] : std::vector<std::tuple<std::string, int, std::vector<std::string>>>{
           {"/metrics", 200, {"-u", "alice:s3cret"}},
           {"/metrics", 401, {}},
           {"/healthz", 200, {}},
           {"/readyz", 200, {}},
           {"/api/v1/diagnoses", 200, {"-u", "alice:s3cret"}}}) {
    SCOPED_TRACE(path + " " + std::to_string(status));
    const Response r = Get(Url(path), args);
    EXPECT_EQ(r.status, status);
    EXPECT_NE(r.headers.find("\r\nX-Frame-Options: deny\r\n"), std::string::npos) << r.headers;
    EXPECT_NE(r.headers.find("\r\nStrict-Transport-Security: max-age=31536000\r\n"), std::string::npos) << r.headers;
    EXPECT_NE(r.headers.find("\r\nX-Content-Type-Options: nosniff\r\n"), std::string::npos) << r.headers;
  }
  // Without the config, none of them.
  ASSERT_NO_FATAL_FAILURE(Start(""));
  const Response r = Get(Url("/metrics"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers.find("X-Frame-Options"), std::string::npos) << r.headers;
}

TEST_F(WebServerTest, CertificateFileReplacedIsServedAtTheNextHandshake) {
  dir_.Write("tls.crt", Read(Pki("server-1.pem")));
  dir_.Write("tls.key", Read(Pki("server-1.key")));
  ASSERT_NO_FATAL_FAILURE(Start("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"));
  EXPECT_NE(ServedSubject().find("CN = server-1"), std::string::npos) << ServedSubject();

  dir_.Replace("tls.key", Read(Pki("server-2.key")));
  dir_.Replace("tls.crt", Read(Pki("server-2.pem")));
  EXPECT_NE(ServedSubject().find("CN = server-2"), std::string::npos) << ServedSubject();
  EXPECT_EQ(Get(Url("/metrics"), Trusting()).status, 200);

  // A broken certificate, or a key that is not its own, keeps the last good pair in service.
  dir_.Replace("tls.crt", "not a certificate\n");
  EXPECT_NE(ServedSubject().find("CN = server-2"), std::string::npos) << ServedSubject();
  EXPECT_EQ(Get(Url("/metrics"), Trusting()).status, 200);
  dir_.Replace("tls.crt", Read(Pki("server-1.pem")));  // the key is still server-2's
  EXPECT_NE(ServedSubject().find("CN = server-2"), std::string::npos) << ServedSubject();
  EXPECT_EQ(Get(Url("/metrics"), Trusting()).status, 200);
  // Rewritten in place, key then certificate.
  dir_.Write("tls.key", Read(Pki("server-1.key")));
  EXPECT_NE(ServedSubject().find("CN = server-1"), std::string::npos) << ServedSubject();
  EXPECT_EQ(Get(Url("/metrics"), Trusting()).status, 200);
}

TEST_F(WebServerTest, CreateChecksWhatTheFilesHold) {
  std::string error;
  auto load = [&](const std::string& yaml) {
    auto config = ParseWebConfig(yaml, dir_.path(), &error);
    EXPECT_TRUE(config) << error;
    return config ? WebSecurity::Create(*config, &error) : nullptr;
  };
  dir_.Write("garbage.pem", "not a certificate\n");
  EXPECT_FALSE(load("tls_server_config:\n  cert_file: garbage.pem\n  key_file: " + Pki("server-1.key") + "\n"));
  EXPECT_EQ(error.rfind("tls_server_config.cert_file: no PEM certificate in ", 0), 0u) << error;
  EXPECT_NE(error.find("no start line"), std::string::npos) << "OpenSSL's reason is lost: " << error;
  EXPECT_FALSE(load("tls_server_config:\n  cert_file: " + Pki("server-1.pem") + "\n  key_file: garbage.pem\n"));
  EXPECT_EQ(error.rfind("tls_server_config.key_file: no unencrypted PEM private key in ", 0), 0u) << error;
  EXPECT_FALSE(
      load("tls_server_config:\n  cert_file: " + Pki("server-1.pem") + "\n  key_file: " + Pki("server-2.key") + "\n"));
  EXPECT_EQ(error.rfind("tls_server_config.key_file: ", 0), 0u) << error;
  EXPECT_NE(error.find("is not the key of"), std::string::npos) << error;
  EXPECT_TRUE(load(TlsConfig())) << error;
}

// Authorization header forms, straight to WebSecurity.
TEST_F(WebServerTest, AuthorizeParsesHeadersStrictly) {
  dir_.Write("token", "  the-token \n");
  std::string error;
  auto config = ParseWebConfig("basic_auth_users:\n  alice: " + Bcrypt("s3:cr et") +
                                   "\nauthorization:\n  credentials_file: token\n",
                               dir_.path(), &error);
  ASSERT_TRUE(config) << error;
  auto security = WebSecurity::Create(*config, &error);
  ASSERT_TRUE(security) << error;
  const std::vector<std::pair<std::string, bool>> cases = {
      {"Basic " + Base64("alice:s3:cr et"), true},  // the password may hold ':' and ' '
      {"basic " + Base64("alice:s3:cr et"), true},
      {"Basic  " + Base64("alice:s3:cr et") + " ", true},
      {"Bearer the-token", true},  // the file's whitespace is not part of the token
      {"BEARER the-token", true},
      {"Basic " + Base64("alice:s3:cr"), false},
      {"Basic " + Base64("alices3:cr et"), false},
      {"Basic " + Base64("alice"), false},
      {"Basic " + Base64(":s3:cr et"), false},
      {"Basic " + Base64("alice:s3:cr et").substr(1), false},
      {"Basic !!!!", false},
      {"Basic ====", false},
      {"Basic", false},
      {"Basic ", false},
      {"Bearer", false},
      {"Bearer ", false},
      {"Bearer the-toke", false},
      {"Bearer  the-token x", false},
      {"Token the-token", false},
      {"the-token", false},
      {"", false},
  };
  for (const auto& [header, ok] : cases) {
    const WebSecurity::Verdict v = security->Authorize(header.c_str());
    EXPECT_EQ(v.ok, ok) << "'" << header << "'";
    if (!v.ok) {
      EXPECT_EQ(v.challenges.size(), 2u);
    }
  }
  EXPECT_FALSE(security->Authorize(nullptr).ok);

  auto open = ParseWebConfig("", dir_.path(), &error);
  ASSERT_TRUE(open);
  EXPECT_TRUE(WebSecurity::Create(*open, &error)->Authorize(nullptr).ok);
}

// The agent refuses a bad file before it loads anything: one line naming the flag, a non-zero exit.
TEST_F(WebServerTest, AgentRefusesABadWebConfigFile) {
  const std::string agent = std::string(IMDSWATCH_BINARY_DIR) + "/imdswatch";
  ASSERT_TRUE(fs::exists(agent)) << agent;
  dir_.Write("garbage.pem", "not a certificate\n");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"tls_server_config:\n  cert_file: " + Pki("server-1.pem") + "\n  key_file: " + Pki("server-1.key") +
           "\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
       "tls_server_config.cipher_suites: not supported by imdswatch"},
      {"basic_auth_users:\n  alice: s3cret\n", "basic_auth_users.alice: is not a bcrypt hash"},
      {"tls_server_config: [\n", "not valid YAML"},
      {"tls_server_config:\n  cert_file: garbage.pem\n  key_file: " + Pki("server-1.key") + "\n",
       "tls_server_config.cert_file: no PEM certificate"},
      {"tls_server_config:\n  cert_file: " + Pki("server-1.pem") + "\n  key_file: " + Pki("server-2.key") + "\n",
       "is not the key of"},
  };
  for (const auto& [yaml, message] : cases) {
    const std::string path = dir_.Write("web.yml", yaml);
    const Shell r = RunShell(Quote(agent) + " --no-kube --web.listen-address 127.0.0.1:0 --web.config.file " + path);
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.rfind("imdswatch: --web.config.file: " + path + ": ", 0), 0u) << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  }
  const Shell r = RunShell(Quote(agent) + " --no-kube --web.config.file " + dir_.File("missing.yml"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.output, "imdswatch: --web.config.file: " + dir_.File("missing.yml") + ": cannot read " +
                          dir_.File("missing.yml") + ": No such file or directory\n");
}

}  // namespace
}  // namespace imdswatch
