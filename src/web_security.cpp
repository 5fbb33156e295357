#include "imdswatch/web_security.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <iterator>

namespace imdswatch {

namespace {

std::string OpenSslError() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    out += (out.empty() ? "" : "; ") + std::string(buf);
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

void Sha256(const std::string& text, unsigned char out[32]) {
  unsigned int len = 32;
  EVP_Digest(text.data(), text.size(), out, &len, EVP_sha256(), nullptr);
}

std::string Trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

bool Base64Decode(const std::string& in, std::string* out) {
  if (in.empty() || in.size() % 4 != 0 || in.size() > 4096) return false;
  std::string buf(in.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(buf.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) return false;
  size_t pad = in.size() - in.find_last_not_of('=') - 1;
  if (pad > 2) return false;
  buf.resize(static_cast<size_t>(n) - pad);
  *out = std::move(buf);
  return true;
}

// A bcrypt hash of a password nobody has: unknown users cost as much as known ones.
constexpr const char* kDummyHash = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";
constexpr size_t kBasicCacheSize = 64;

int AcceptAnyCertificate(int, X509_STORE_CTX*) { return 1; }

}  // namespace

struct WebSecurity::Identity {
  X509* leaf = nullptr;
  STACK_OF(X509)* chain = nullptr;
  EVP_PKEY* key = nullptr;
  FileStamp cert_stamp, key_stamp;
  ~Identity() {
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
  }
};

WebSecurity::WebSecurity(WebConfig config) : config_(std::move(config)) {
  for (const auto& [name, value] : config_.headers) extra_headers_ += name + ": " + value + "\r\n";
}

WebSecurity::~WebSecurity() { OPENSSL_cleanse(bearer_digest_, sizeof(bearer_digest_)); }

WebSecurity::FileStamp WebSecurity::Stamp(const std::string& path) {
  struct stat st;
  FileStamp s;
  if (stat(path.c_str(), &st) != 0) return s;
  s.dev = st.st_dev;
  s.ino = st.st_ino;
  s.size = st.st_size;
  s.mtime_ns = static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
  return s;
}

std::unique_ptr<WebSecurity> WebSecurity::Create(const WebConfig& config, std::string* error) {
  std::unique_ptr<WebSecurity> s(new WebSecurity(config));
  if (s->tls() && !s->LoadIdentity(error)) return nullptr;
  if (!config.bearer_token_file.empty()) s->CheckBearer("");
  if (!config.bearer_token_file.empty() && !s->bearer_valid_) {
    *error = "authorization.credentials_file: cannot read a token from " + config.bearer_token_file;
    return nullptr;
  }
  return s;
}

// Reads cert_file (the leaf, then its chain) and key_file; keeps the old identity when they do not load.
bool WebSecurity::LoadIdentity(std::string* error) {
  const TlsServerConfig& tls = *config_.tls;
  auto id = std::make_shared<Identity>();
  id->cert_stamp = Stamp(tls.cert_file);
  id->key_stamp = Stamp(tls.key_file);
  ERR_clear_error();
  BIO* bio = BIO_new_file(tls.cert_file.c_str(), "r");
  if (bio) {
    id->leaf = PEM_read_bio_X509_AUX(bio, nullptr, nullptr, nullptr);
    id->chain = sk_X509_new_null();
    while (id->leaf) {
      X509* extra = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
      if (!extra) break;
      sk_X509_push(id->chain, extra);
    }
    BIO_free(bio);
  }
  if (!id->leaf) {
    *error = "tls_server_config.cert_file: no PEM certificate in " + tls.cert_file + ": " + OpenSslError();
    return false;
  }
  ERR_clear_error();  // the end of the chain
  bio = BIO_new_file(tls.key_file.c_str(), "r");
  if (bio) {
    id->key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
  }
  if (!id->key) {
    *error = "tls_server_config.key_file: no unencrypted PEM private key in " + tls.key_file + ": " + OpenSslError();
    return false;
  }
  if (X509_check_private_key(id->leaf, id->key) != 1) {
    *error = "tls_server_config.key_file: " + tls.key_file + " is not the key of " + tls.cert_file;
    ERR_clear_error();
    return false;
  }
  std::lock_guard<std::mutex> lock(identity_mu_);
  identity_ = std::move(id);
  return true;
}

// At every handshake: re-read the certificate and key when their files changed (cert-manager, a rotated Secret).
int WebSecurity::CertCallback(SSL* ssl, void* arg) {
  auto* self = static_cast<WebSecurity*>(arg);
  std::shared_ptr<Identity> id;
  {
    std::lock_guard<std::mutex> lock(self->identity_mu_);
    id = self->identity_;
  }
  const TlsServerConfig& tls = *self->config_.tls;
  if (!(Stamp(tls.cert_file) == id->cert_stamp) || !(Stamp(tls.key_file) == id->key_stamp)) {
    std::string error;
    if (self->LoadIdentity(&error)) {
      spdlog::info("web config: reloaded {} and {}", tls.cert_file, tls.key_file);
    } else {
      spdlog::warn("web config: keeping the previous certificate: {}", error);
      std::lock_guard<std::mutex> lock(self->identity_mu_);
      // do not retry on every handshake until the files change again
      auto same = std::make_shared<Identity>();
      X509_up_ref(id->leaf);
      same->leaf = id->leaf;
      same->chain = X509_chain_up_ref(id->chain);
      EVP_PKEY_up_ref(id->key);
      same->key = id->key;
      same->cert_stamp = Stamp(tls.cert_file);
      same->key_stamp = Stamp(tls.key_file);
      self->identity_ = std::move(same);
    }
    std::lock_guard<std::mutex> lock(self->identity_mu_);
    id = self->identity_;
  }
  return SSL_use_cert_and_key(ssl, id->leaf, id->key, id->chain, 1) == 1 ? 1 : 0;
}

bool WebSecurity::InitSsl(SSL_CTX* ctx, std::string* error) {
  const TlsServerConfig& tls = *config_.tls;
  ERR_clear_error();
  std::shared_ptr<Identity> id;
  {
    std::lock_guard<std::mutex> lock(identity_mu_);
    id = identity_;
  }
  if (SSL_CTX_use_cert_and_key(ctx, id->leaf, id->key, id->chain, 1) != 1) {
    *error = "tls_server_config.cert_file: " + OpenSslError();
    return false;
  }
  SSL_CTX_set_cert_cb(ctx, &WebSecurity::CertCallback, this);
  // min_version and max_version decide, not the SSL_OP_NO_TLS* options civetweb sets from its own defaults.
  SSL_CTX_clear_options(ctx, SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 | SSL_OP_NO_TLSv1_2 | SSL_OP_NO_TLSv1_3);
  if (SSL_CTX_set_min_proto_version(ctx, tls.min_version) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, tls.max_version) != 1) {
    *error = "tls_server_config.min_version/max_version: " + OpenSslError();
    return false;
  }
  // Sessions resumed across client-certificate checks need a context id.
  static const unsigned char kSessionContext[] = "imdswatch";
  SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof(kSessionContext) - 1);
  if (!tls.client_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, tls.client_ca_file.c_str(), nullptr) != 1) {
      *error = "tls_server_config.client_ca_file: " + OpenSslError();
      return false;
    }
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(tls.client_ca_file.c_str()))
      SSL_CTX_set_client_CA_list(ctx, names);
  }
  switch (tls.client_auth) {
    case ClientAuth::kNoClientCert:
      SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
      break;
    case ClientAuth::kRequestClientCert:
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, AcceptAnyCertificate);
      break;
    case ClientAuth::kRequireAnyClientCert:
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, AcceptAnyCertificate);
      break;
    case ClientAuth::kVerifyClientCertIfGiven:
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
      break;
    case ClientAuth::kRequireAndVerifyClientCert:
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
      break;
  }
  return true;
}

WebSecurity::Verdict WebSecurity::Authorize(const char* authorization) {
  if (!config_.RequiresAuth()) return {true, {}};
  if (authorization) {
    const std::string value = authorization;
    const size_t space = value.find(' ');
    std::string scheme = value.substr(0, space);
    for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const std::string rest = space == std::string::npos ? "" : Trim(value.substr(space + 1));
    if (scheme == "basic" && !config_.basic_auth_users.empty() && CheckBasic(rest)) return {true, {}};
    if (scheme == "bearer" && !config_.bearer_token_file.empty() && !rest.empty() && CheckBearer(rest))
      return {true, {}};
  }
  Verdict v{false, {}};
  if (!config_.basic_auth_users.empty()) v.challenges.push_back("Basic realm=\"imdswatch\"");
  if (!config_.bearer_token_file.empty()) v.challenges.push_back("Bearer realm=\"imdswatch\"");
  return v;
}

bool WebSecurity::CheckBasic(const std::string& credentials) {
  std::string decoded;
  if (!Base64Decode(credentials, &decoded)) return false;
  const size_t colon = decoded.find(':');
  if (colon == std::string::npos) return false;
  const std::string user = decoded.substr(0, colon);
  const std::string password = decoded.substr(colon + 1);
  OPENSSL_cleanse(decoded.data(), decoded.size());
  auto it = config_.basic_auth_users.find(user);
  const bool known = it != config_.basic_auth_users.end();
  const std::string& hash = known ? it->second : std::string(kDummyHash);
  unsigned char key[32];
  Sha256(user + '\0' + hash + '\0' + password, key);
  const std::string cache_key(reinterpret_cast<const char*>(key), sizeof(key));
  std::lock_guard<std::mutex> lock(basic_mu_);
  for (const auto& [k, ok] : basic_cache_) {
    if (k == cache_key) return ok;
  }
  crypt_data data{};
  const char* out = crypt_rn(password.c_str(), hash.c_str(), &data, sizeof(data));
  const bool match = out != nullptr && std::strlen(out) == hash.size() &&
                     CRYPTO_memcmp(out, hash.data(), hash.size()) == 0;
  OPENSSL_cleanse(&data, sizeof(data));
  const bool ok = known && match;
  if (basic_cache_.size() >= kBasicCacheSize) basic_cache_.erase(basic_cache_.begin());
  basic_cache_.emplace_back(cache_key, ok);
  return ok;
}

// Re-reads the token file when it changed (a Kubernetes Secret swaps a symlink: a new inode), then compares
// SHA-256 digests in constant time. An empty token only refreshes the file.
bool WebSecurity::CheckBearer(const std::string& token) {
  std::lock_guard<std::mutex> lock(bearer_mu_);
  const FileStamp stamp = Stamp(config_.bearer_token_file);
  if (!(stamp == bearer_stamp_) || !bearer_valid_) {
    bearer_stamp_ = stamp;
    std::ifstream in(config_.bearer_token_file);
    std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string secret = Trim(raw);
    OPENSSL_cleanse(raw.data(), raw.size());
    const bool was_valid = bearer_valid_;
    bearer_valid_ = !secret.empty();
    if (bearer_valid_) Sha256(secret, bearer_digest_);
    else OPENSSL_cleanse(bearer_digest_, sizeof(bearer_digest_));
    OPENSSL_cleanse(secret.data(), secret.size());
    if (!bearer_valid_ && was_valid)
      spdlog::warn("web config: no token in {}: bearer requests are refused until it has one",
                   config_.bearer_token_file);
    else if (bearer_valid_ && was_valid)
      spdlog::info("web config: re-read the bearer token from {}", config_.bearer_token_file);
  }
  if (!bearer_valid_ || token.empty()) return false;
  unsigned char digest[32];
  Sha256(token, digest);
  return CRYPTO_memcmp(digest, bearer_digest_, sizeof(digest)) == 0;
}

}  // namespace imdswatch
