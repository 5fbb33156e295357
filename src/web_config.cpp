#include "imdswatch/web_config.h"

#include <crypt.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace imdswatch {

namespace {

struct Invalid {
  std::string message;  // "key: what is wrong"
};

[[noreturn]] void Fail(const std::string& key, const std::string& what) { throw Invalid{key + ": " + what}; }

// Every key of a mapping must be one of `known`; `unsupported` ones get their own message.
void CheckKeys(const YAML::Node& node, const std::string& where, const std::set<std::string>& known,
               const std::set<std::string>& unsupported = {}) {
  if (!node.IsMap()) Fail(where.empty() ? "the file" : where, "must be a mapping");
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    const std::string full = where.empty() ? key : where + "." + key;
    if (unsupported.count(key)) Fail(full, "not supported by imdswatch");
    if (!known.count(key)) Fail(full, "unknown key");
  }
}

std::string Scalar(const YAML::Node& node, const std::string& key) {
  if (!node.IsScalar()) Fail(key, "must be a string");
  return node.Scalar();
}

bool Bool(const YAML::Node& node, const std::string& key) {
  if (!node.IsScalar()) Fail(key, "must be true or false");
  const std::string& v = node.Scalar();
  if (v == "true") return true;
  if (v == "false") return false;
  Fail(key, "'" + v + "' must be true or false");
}

// A file named in the config: absolute, readable.
std::string File(const YAML::Node& node, const std::string& key, const std::string& base_dir) {
  std::string path = Scalar(node, key);
  if (path.empty()) Fail(key, "must not be empty");
  if (path.front() != '/' && !base_dir.empty()) path = base_dir + "/" + path;
  if (access(path.c_str(), R_OK) != 0) Fail(key, "cannot read " + path + ": " + std::strerror(errno));
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) Fail(key, path + " is not a regular file");
  return path;
}

int TlsVersion(const YAML::Node& node, const std::string& key) {
  const std::string v = Scalar(node, key);
  if (v == "TLS10") return 0x0301;
  if (v == "TLS11") return 0x0302;
  if (v == "TLS12") return 0x0303;
  if (v == "TLS13") return 0x0304;
  Fail(key, "'" + v + "' is not one of TLS10, TLS11, TLS12, TLS13");
}

ClientAuth ClientAuthType(const YAML::Node& node, const std::string& key) {
  const std::string v = Scalar(node, key);
  if (v.empty() || v == "NoClientCert") return ClientAuth::kNoClientCert;
  if (v == "RequestClientCert") return ClientAuth::kRequestClientCert;
  if (v == "RequireAnyClientCert" || v == "RequireClientCert") return ClientAuth::kRequireAnyClientCert;
  if (v == "VerifyClientCertIfGiven") return ClientAuth::kVerifyClientCertIfGiven;
  if (v == "RequireAndVerifyClientCert") return ClientAuth::kRequireAndVerifyClientCert;
  Fail(key, "'" + v +
                "' is not one of NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, "
                "RequireAndVerifyClientCert");
}

TlsServerConfig ParseTls(const YAML::Node& node, const std::string& base_dir) {
  const std::string w = "tls_server_config";
  CheckKeys(node, w,
            {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version",
             "prefer_server_cipher_suites"},
            {"cert", "key", "client_ca", "cipher_suites", "curve_preferences", "client_allowed_sans"});
  TlsServerConfig tls;
  if (!node["cert_file"]) Fail(w + ".cert_file", "missing (a TLS server needs cert_file and key_file)");
  if (!node["key_file"]) Fail(w + ".key_file", "missing (a TLS server needs cert_file and key_file)");
  tls.cert_file = File(node["cert_file"], w + ".cert_file", base_dir);
  tls.key_file = File(node["key_file"], w + ".key_file", base_dir);
  if (node["client_ca_file"]) tls.client_ca_file = File(node["client_ca_file"], w + ".client_ca_file", base_dir);
  if (node["client_auth_type"]) tls.client_auth = ClientAuthType(node["client_auth_type"], w + ".client_auth_type");
  if (node["min_version"]) tls.min_version = TlsVersion(node["min_version"], w + ".min_version");
  if (node["max_version"]) tls.max_version = TlsVersion(node["max_version"], w + ".max_version");
  if (node["prefer_server_cipher_suites"] &&
      !Bool(node["prefer_server_cipher_suites"], w + ".prefer_server_cipher_suites"))
    Fail(w + ".prefer_server_cipher_suites", "false is not supported by imdswatch (the server's order is used)");
  if (tls.min_version > tls.max_version) Fail(w + ".min_version", "is above max_version");
  const bool verifies = tls.client_auth == ClientAuth::kVerifyClientCertIfGiven ||
                        tls.client_auth == ClientAuth::kRequireAndVerifyClientCert;
  if (verifies && tls.client_ca_file.empty())
    Fail(w + ".client_ca_file", "missing: client_auth_type verifies client certificates against it");
  if (!tls.client_ca_file.empty() && tls.client_auth == ClientAuth::kNoClientCert)
    Fail(w + ".client_auth_type", "client_ca_file is set without a client_auth_type that asks for certificates");
  return tls;
}

// exporter-toolkit's extraHTTPHeaders: the headers that may be set, and the values allowed where it limits them.
const std::map<std::string, std::vector<std::string>>& AllowedHeaders() {
  static const std::map<std::string, std::vector<std::string>> allowed = {
      {"Strict-Transport-Security", {}},
      {"X-Content-Type-Options", {"nosniff"}},
      {"X-Frame-Options", {"deny", "sameorigin"}},
      {"X-XSS-Protection", {}},
      {"Content-Security-Policy", {}},
  };
  return allowed;
}

void ParseHttp(const YAML::Node& node, WebConfig* out) {
  const std::string w = "http_server_config";
  CheckKeys(node, w, {"headers", "http2"});
  if (node["http2"] && Bool(node["http2"], w + ".http2"))
    Fail(w + ".http2", "true is not supported by imdswatch (HTTP/1.1 only; set it to false)");
  if (!node["headers"] || node["headers"].IsNull()) return;
  const YAML::Node headers = node["headers"];
  if (!headers.IsMap()) Fail(w + ".headers", "must be a mapping of header names to values");
  for (const auto& kv : headers) {
    const std::string name = kv.first.as<std::string>();
    const std::string key = w + ".headers." + name;
    auto it = AllowedHeaders().find(name);
    if (it == AllowedHeaders().end())
      Fail(key, "this header cannot be configured (Strict-Transport-Security, X-Content-Type-Options, "
                "X-Frame-Options, X-XSS-Protection, Content-Security-Policy can)");
    const std::string value = Scalar(kv.second, key);
    if (value.find_first_of("\r\n") != std::string::npos) Fail(key, "must be one line");
    if (!it->second.empty() && std::find(it->second.begin(), it->second.end(), value) == it->second.end()) {
      std::string allowed;
      for (const std::string& a : it->second) allowed += (allowed.empty() ? "" : ", ") + a;
      Fail(key, "'" + value + "' is not one of " + allowed);
    }
    if (!value.empty()) out->headers.emplace_back(name, value);  // blank: unset, as exporter-toolkit does
  }
}

// A bcrypt hash libxcrypt computes: $2a$/$2b$/$2y$, cost 04-31, 53 characters of salt and hash.
void CheckBcrypt(const std::string& hash, const std::string& key) {
  const bool shape = hash.size() == 60 && hash[0] == '$' && hash[1] == '2' &&
                     (hash[2] == 'a' || hash[2] == 'b' || hash[2] == 'y') && hash[3] == '$' && hash[6] == '$' &&
                     std::isdigit(static_cast<unsigned char>(hash[4])) &&
                     std::isdigit(static_cast<unsigned char>(hash[5]));
  const int cost = shape ? (hash[4] - '0') * 10 + (hash[5] - '0') : 0;
  if (!shape || cost < 4 || cost > 31) Fail(key, "is not a bcrypt hash ($2y$10$... as `htpasswd -nBC 10` makes)");
  crypt_data data{};
  char* out = crypt_rn("probe", hash.c_str(), &data, sizeof(data));
  if (out == nullptr || out[0] == '*') Fail(key, "is not a bcrypt hash this system's crypt accepts");
}

void ParseUsers(const YAML::Node& node, WebConfig* out) {
  if (node.IsNull()) return;
  if (!node.IsMap()) Fail("basic_auth_users", "must be a mapping of user names to bcrypt hashes");
  for (const auto& kv : node) {
    const std::string user = kv.first.as<std::string>();
    const std::string key = "basic_auth_users." + user;
    if (user.empty() || user.find(':') != std::string::npos) Fail(key, "a user name must be non-empty without ':'");
    const std::string hash = Scalar(kv.second, key);
    CheckBcrypt(hash, key);
    out->basic_auth_users[user] = hash;
  }
}

void ParseAuthorization(const YAML::Node& node, const std::string& base_dir, WebConfig* out) {
  const std::string w = "authorization";
  CheckKeys(node, w, {"type", "credentials_file"}, {"credentials"});
  if (node["type"]) {
    std::string type = Scalar(node["type"], w + ".type");
    for (char& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (type != "bearer") Fail(w + ".type", "only Bearer is supported");
  }
  if (!node["credentials_file"]) Fail(w + ".credentials_file", "missing (the file holding the bearer token)");
  out->bearer_token_file = File(node["credentials_file"], w + ".credentials_file", base_dir);
  std::ifstream in(out->bearer_token_file);
  std::stringstream text;
  text << in.rdbuf();
  if (text.str().find_first_not_of(" \t\r\n") == std::string::npos)
    Fail(w + ".credentials_file", out->bearer_token_file + " is empty");
}

}  // namespace

std::optional<WebConfig> ParseWebConfig(const std::string& yaml, const std::string& base_dir, std::string* error) {
  WebConfig config;
  try {
    const YAML::Node root = YAML::Load(yaml);
    if (root.IsNull()) return config;  // an empty file: plain HTTP, no authentication, as exporter-toolkit
    CheckKeys(root, "", {"tls_server_config", "http_server_config", "basic_auth_users", "authorization"},
              {"rate_limit"});
    if (root["tls_server_config"] && !root["tls_server_config"].IsNull())
      config.tls = ParseTls(root["tls_server_config"], base_dir);
    if (root["http_server_config"] && !root["http_server_config"].IsNull())
      ParseHttp(root["http_server_config"], &config);
    if (root["basic_auth_users"]) ParseUsers(root["basic_auth_users"], &config);
    if (root["authorization"] && !root["authorization"].IsNull())
      ParseAuthorization(root["authorization"], base_dir, &config);
  } catch (const Invalid& e) {
    *error = e.message;
    return std::nullopt;
  } catch (const YAML::Exception& e) {
    *error = std::string("not valid YAML: ") + e.what();
    return std::nullopt;
  }
  return config;
}

std::optional<WebConfig> LoadWebConfig(const std::string& path, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "cannot read " + path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  std::stringstream text;
  text << in.rdbuf();
  // Files named in it are taken from its directory, made absolute so that they do not depend on the working
  // directory.
  const size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "" : (slash == 0 ? "/" : path.substr(0, slash));
  if (dir.empty() || dir.front() != '/') {
    std::error_code cwd_error;
    const std::filesystem::path cwd = std::filesystem::current_path(cwd_error);
    if (!cwd_error)
      dir = dir.empty() ? cwd.string() : (cwd / dir).string();
    else if (dir.empty()) dir = ".";
  }
  auto config = ParseWebConfig(text.str(), dir, error);
  if (config) config->path = path;
  return config;
}

}  // namespace imdswatch
