// What --web.config.file asks of the HTTP endpoint, at run time: the TLS
// context (certificate and key re-read when their files change, checked at
// every handshake; client-certificate policy), request authentication (basic
// users with bcrypt hashes, the bearer token re-read when its file changes)
// and the extra response headers.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "imdswatch/web_config.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace imdswatch {

class WebSecurity {
 public:
  // Loads the certificate and key (when TLS is configured) and the bearer
  // token; null with *error naming the config key on failure.
  static std::unique_ptr<WebSecurity> Create(const WebConfig& config, std::string* error);
  ~WebSecurity();

  bool tls() const { return config_.tls.has_value(); }
  const WebConfig& config() const { return config_; }

  // Sets up civetweb's SSL_CTX (its init_ssl callback): certificate, key,
  // protocol versions, client-certificate policy. False with *error on failure.
  bool InitSsl(SSL_CTX* ctx, std::string* error);

  struct Verdict {
    bool ok;
    std::vector<std::string> challenges;  // WWW-Authenticate values when !ok
  };
  // Checks an Authorization header value (null when absent). Always ok when
  // neither basic users nor a bearer token are configured.
  Verdict Authorize(const char* authorization);

  // "Name: value\r\n" for each configured header.
  const std::string& ExtraHeaders() const { return extra_headers_; }

 private:
  explicit WebSecurity(WebConfig config);
  struct Identity;  // certificate chain + key, with the files' stamps
  struct FileStamp {
    unsigned long dev = 0, ino = 0;
    long long size = -1, mtime_ns = 0;
    bool operator==(const FileStamp&) const = default;
  };
  static FileStamp Stamp(const std::string& path);
  bool LoadIdentity(std::string* error);
  static int CertCallback(SSL* ssl, void* arg);
  bool CheckBasic(const std::string& credentials);
  bool CheckBearer(const std::string& token);

  WebConfig config_;
  std::string extra_headers_;

  std::mutex identity_mu_;
  std::shared_ptr<Identity> identity_;

  std::mutex bearer_mu_;
  FileStamp bearer_stamp_;
  unsigned char bearer_digest_[32] = {};
  bool bearer_valid_ = false;

  std::mutex basic_mu_;  // one bcrypt at a time, as exporter-toolkit; and the cache
  std::vector<std::pair<std::string, bool>> basic_cache_;  // SHA-256(user, password, hash) → verdict
};

}  // namespace imdswatch
