// --web.config.file: TLS and authentication of the HTTP endpoint, in the
// Prometheus exporter-toolkit web configuration format
// (docs/web-configuration.md of prometheus/exporter-toolkit), parsed as
// strictly as exporter-toolkit does: an unknown key is an error naming it.
//
// Supported: tls_server_config {cert_file, key_file, client_auth_type,
// client_ca_file, min_version, max_version, prefer_server_cipher_suites: true},
// http_server_config {headers, http2: false}, basic_auth_users (bcrypt).
// Rejected as "not supported by imdswatch" rather than ignored: inline cert,
// key and client_ca, cipher_suites, curve_preferences, client_allowed_sans,
// rate_limit, http2: true, prefer_server_cipher_suites: false.
//
// imdswatch extension (exporter-toolkit has no bearer tokens):
//   authorization:
//     type: Bearer               # the only type; optional
//     credentials_file: PATH     # the token, surrounding whitespace trimmed
// the server-side twin of Prometheus' scrape-side `authorization` block.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace imdswatch {

// Who must show a client certificate, and whether it is checked against
// client_ca_file (Go's tls.ClientAuthType, as exporter-toolkit names them).
enum class ClientAuth {
  kNoClientCert,
  kRequestClientCert,           // asked for, not required, not verified
  kRequireAnyClientCert,        // required, not verified
  kVerifyClientCertIfGiven,     // verified when given
  kRequireAndVerifyClientCert,  // required and verified: the one to use
};

// TLS protocol versions as OpenSSL numbers them (TLS1_2_VERSION ...).
struct TlsServerConfig {
  std::string cert_file;  // absolute (relative paths are taken from the config file's directory)
  std::string key_file;
  std::string client_ca_file;  // "" = none
  ClientAuth client_auth = ClientAuth::kNoClientCert;
  int min_version = 0x0303;  // TLS12
  int max_version = 0x0304;  // TLS13
};

struct WebConfig {
  std::string path;                    // the file this came from
  std::optional<TlsServerConfig> tls;  // absent: plain HTTP
  std::vector<std::pair<std::string, std::string>> headers;  // extra response headers
  std::map<std::string, std::string> basic_auth_users;       // user → bcrypt hash
  std::string bearer_token_file;                             // "" = no bearer tokens

  // Whether requests must authenticate (basic or bearer) on the protected paths.
  bool RequiresAuth() const { return !basic_auth_users.empty() || !bearer_token_file.empty(); }
};

// Parses YAML text; relative file paths are resolved against base_dir. Checks
// that every file named is readable. On error returns nullopt with a one-line
// message naming the key in *error (e.g. "tls_server_config.min_version: ...").
std::optional<WebConfig> ParseWebConfig(const std::string& yaml, const std::string& base_dir, std::string* error);

// Reads and parses the file at path.
std::optional<WebConfig> LoadWebConfig(const std::string& path, std::string* error);

}  // namespace imdswatch
