#include "imdswatch/http_server.h"

#include <CivetServer.h>
#include <dlfcn.h>
#include <link.h>
#include <openssl/ssl.h>
#include <malloc.h>
#include <spdlog/spdlog.h>

#include <cstdint>
#include <cstring>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "imdswatch/web_security.h"

namespace imdswatch {

namespace {

// The server's --web.config.file rules (CivetServer's user context), null without one.
WebSecurity* SecurityOf(const mg_connection* conn) {
  auto* server = static_cast<CivetServer*>(mg_get_user_data(mg_get_context(conn)));
  return server ? static_cast<WebSecurity*>(const_cast<void*>(server->getUserContext())) : nullptr;
}

void Reply(mg_connection* conn, int status, const char* content_type, const std::string& body,
           const std::string& more_headers = "") {
  WebSecurity* security = SecurityOf(conn);
  const std::string headers = (security ? security->ExtraHeaders() : std::string()) + more_headers;
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
            status, mg_get_response_code_text(conn, status), content_type, body.size(), headers.c_str());
  mg_write(conn, body.data(), body.size());
}

// civetweb's messages: collected while the server starts (for the error), debug-logged after (TLS handshake
// failures of scanners and clients without the right certificate).
thread_local std::string* startup_messages = nullptr;

int LogMessage(const mg_connection*, const char* message) {
  if (startup_messages) *startup_messages += (startup_messages->empty() ? "" : "; ") + std::string(message);
  else spdlog::debug("http: {}", message);
  return 1;
}

// Debian 12's civetweb 1.15 is built for the OpenSSL 1.1 API and loads libssl at run time by name. OpenSSL 3 has
// SSL_get_peer_certificate only as a macro for SSL_get1_peer_certificate, so civetweb's function table keeps a null
// pointer for it, and calls it after every TLS handshake (SIGSEGV). The entry is found in civetweb's writable data
// by the name it points to and its neighbours' names, and given the function the macro stands for.
struct CivetwebImage {
  std::vector<std::pair<uintptr_t, uintptr_t>> loaded, writable, relro;
};

int FindCivetweb(dl_phdr_info* info, size_t, void* data) {
  if (info->dlpi_name == nullptr || std::strstr(info->dlpi_name, "/libcivetweb.so") == nullptr) return 0;
  auto* image = static_cast<CivetwebImage*>(data);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    const uintptr_t start = info->dlpi_addr + ph.p_vaddr, end = start + ph.p_memsz;
    if (ph.p_type == PT_LOAD) image->loaded.emplace_back(start, end);
    if (ph.p_type == PT_LOAD && (ph.p_flags & PF_W)) image->writable.emplace_back(start, end);
    if (ph.p_type == PT_GNU_RELRO) image->relro.emplace_back(start, end);
  }
  return 1;
}

bool Within(const std::vector<std::pair<uintptr_t, uintptr_t>>& ranges, uintptr_t start, size_t size) {
  for (const auto& [b, e] : ranges) {
    if (start >= b && start + size <= e) return true;
  }
  return false;
}

// Whether `p` points into civetweb's image at the NUL-terminated `name`.
bool NameAt(const CivetwebImage& image, uintptr_t p, const char* name) {
  const size_t n = std::strlen(name) + 1;
  return Within(image.loaded, p, n) && std::memcmp(reinterpret_cast<const void*>(p), name, n) == 0;
}

bool FixCivetwebPeerCertificate(std::string* error) {
  CivetwebImage image;
  if (dl_iterate_phdr(FindCivetweb, &image) == 0) return true;  // not a shared civetweb
  struct SslFunc {  // civetweb's struct ssl_func
    const char* name;
    int required;
    void (*ptr)();
  };
  constexpr const char* kName = "SSL_get_peer_certificate";
  for (const auto& [b, e] : image.writable) {
    for (uintptr_t at = (b + alignof(SslFunc) - 1) & ~(alignof(SslFunc) - 1); at + 2 * sizeof(SslFunc) <= e;
         at += alignof(SslFunc)) {
      if (at < b + sizeof(SslFunc) || Within(image.relro, at, sizeof(SslFunc))) continue;
      auto* entry = reinterpret_cast<SslFunc*>(at);
      if (!NameAt(image, reinterpret_cast<uintptr_t>(entry->name), kName)) continue;
      if (!NameAt(image, reinterpret_cast<uintptr_t>(entry[-1].name), "SSL_CTX_set_verify_depth") ||
          !NameAt(image, reinterpret_cast<uintptr_t>(entry[1].name), "SSL_get_version"))
        continue;
      if (entry->ptr == nullptr) entry->ptr = reinterpret_cast<void (*)()>(&SSL_get1_peer_certificate);
      return true;
    }
  }
  // No such table. When civetweb still names the function and this OpenSSL lacks it, TLS connections would crash.
  if (dlsym(RTLD_DEFAULT, kName) != nullptr) return true;
  for (const auto& [b, e] : image.loaded) {
    const size_t n = std::strlen(kName) + 1;
    if (e - b >= n && memmem(reinterpret_cast<const void*>(b), e - b, kName, n) != nullptr) {
      *error = "this civetweb looks up SSL_get_peer_certificate, which OpenSSL 3 does not export";
      return false;
    }
  }
  return true;
}

int InitSsl(void* ssl_ctx, void* user_data) {
  auto* server = static_cast<CivetServer*>(user_data);
  auto* security = static_cast<WebSecurity*>(const_cast<void*>(server->getUserContext()));
  std::string error;
  if (!FixCivetwebPeerCertificate(&error)) {
    if (startup_messages) *startup_messages += error;
    return -1;
  }
  if (security->InitSsl(static_cast<SSL_CTX*>(ssl_ctx), &error)) return 1;
  if (startup_messages) *startup_messages += error;
  return -1;
}

class Handler : public CivetHandler {
 public:
  explicit Handler(std::function<void(mg_connection*)> fn) : fn_(std::move(fn)) {}
  bool handleGet(CivetServer*, mg_connection* conn) override {
    fn_(conn);
    return true;
  }

 private:
  std::function<void(mg_connection*)> fn_;
};

}  // namespace

struct HttpServer::Handlers {
  HttpRoutes routes;
  std::vector<std::unique_ptr<Handler>> handlers;
};

std::unique_ptr<HttpServer> HttpServer::Start(const std::string& listen_address, HttpRoutes routes,
                                              std::string* error, std::shared_ptr<WebSecurity> security) {
  std::string ports = listen_address;
  if (!ports.empty() && ports.front() == ':') ports = "0.0.0.0" + ports;
  const bool tls = security && security->tls();
  if (tls) ports += "s";  // civetweb: an https-only port
  std::unique_ptr<HttpServer> server(new HttpServer());
  server->handlers_ = std::make_unique<Handlers>();
  server->handlers_->routes = std::move(routes);
  server->security_ = security;
  const std::vector<std::string> options = {"listening_ports", ports, "num_threads", "4",
                                            "request_timeout_ms", "10000"};
  CivetCallbacks callbacks;
  callbacks.log_message = LogMessage;
  if (tls) callbacks.init_ssl = InitSsl;
  std::string messages;
  startup_messages = &messages;
  try {
    server->server_ = std::make_unique<CivetServer>(options, &callbacks, security.get());
  } catch (const CivetException& e) {
    startup_messages = nullptr;
    *error = (tls ? "cannot serve HTTPS on " : "cannot listen on ") + listen_address +
             (tls ? " (--web.listen-address, --web.config.file): " : " (--web.listen-address): ") +
             (messages.empty() ? std::string(e.what()) + " (is the port in use?)" : messages);
    if (tls && mg_check_feature(MG_FEATURES_SSL) == 0) *error += " (this civetweb was built without TLS)";
    if (tls && messages.find("error loading library") != std::string::npos)
      *error += " (civetweb loads OpenSSL as libssl.so and libcrypto.so: install libssl-dev, or link these names to "
                "libssl.so.3 and libcrypto.so.3)";
    return nullptr;
  }
  startup_messages = nullptr;
  Handlers* h = server->handlers_.get();
  WebSecurity* guard = security.get();
  auto add = [&](const std::string& uri, std::function<void(mg_connection*)> fn) {
    // Probes stay open (kubelet's HTTPS probes show no certificate or token); everything else authenticates.
    if (guard && guard->config().RequiresAuth() && uri != "/healthz" && uri != "/readyz") {
      fn = [guard, inner = std::move(fn)](mg_connection* conn) {
        WebSecurity::Verdict v = guard->Authorize(mg_get_header(conn, "Authorization"));
        if (!v.ok) {
          std::string challenges;
          for (const std::string& c : v.challenges) challenges += "WWW-Authenticate: " + c + "\r\n";
          Reply(conn, 401, "text/plain", "Unauthorized\n", challenges);
          return;
        }
        inner(conn);
      };
    }
    // civetweb's threads have 100 KiB stacks (Debian builds it with CIVETWEB_THREAD_STACK_SIZE=102400): a
    // scrape that resolves thousands of cgroups overflowed one under ASan. Each request runs on a thread
    // with the default stack; the civetweb thread waits for it (tens of microseconds per scrape).
    fn = [inner = std::move(fn)](mg_connection* conn) { std::thread([&] { inner(conn); }).join(); };
    h->handlers.push_back(std::make_unique<Handler>(std::move(fn)));
    server->server_->addHandler(uri, h->handlers.back().get());
  };
  add("/metrics", [h](mg_connection* conn) {
    // Streamed while it is written (chunked; to an HTTP/1.0 client, up to the connection's end), so a
    // scrape holds one piece of the text (MetricsWriter::kFlushBytes), not all of it.
    const mg_request_info* request = mg_get_request_info(conn);
    const bool chunked = request && request->http_version && std::string_view(request->http_version) != "1.0";
    WebSecurity* security = SecurityOf(conn);
    const std::string headers = security ? security->ExtraHeaders() : std::string();
    mg_printf(conn,
              "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n%s%s"
              "Connection: close\r\n\r\n",
              chunked ? "Transfer-Encoding: chunked\r\n" : "", headers.c_str());
    const bool sent = RenderMetrics(h->routes.collectables, [conn, chunked](std::string_view text) {
      if (chunked) return mg_send_chunk(conn, text.data(), static_cast<unsigned>(text.size())) > 0;
      return mg_write(conn, text.data(), text.size()) == static_cast<int>(text.size());
    });
    if (sent && chunked) mg_send_chunk(conn, "", 0);  // the last chunk
    malloc_trim(0);  // the scrape's freed pages go back to the system, not into RSS until the next one
  });
  add("/healthz", [h](mg_connection* conn) {
    HealthStatus s = h->routes.healthz();
    Reply(conn, s.ok ? 200 : 503, "text/plain", s.detail + "\n");
  });
  add("/readyz", [h](mg_connection* conn) {
    HealthStatus s = h->routes.readyz();
    Reply(conn, s.ok ? 200 : 503, "text/plain", s.detail + "\n");
  });
  for (const auto& [path, producer] : h->routes.json) {
    auto fn = producer;
    add(path, [fn](mg_connection* conn) { Reply(conn, 200, "application/json", fn()); });
  }
  return server;
}

HttpServer::~HttpServer() {
  if (server_) server_->close();
}

int HttpServer::port() const {
  auto ports = server_->getListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

}  // namespace imdswatch
