// The agent's HTTP endpoint (civetweb): /metrics streamed from the metrics
// sources (metrics_writer.h), /healthz, /readyz, and JSON for `imdswatch doctor`.
#pragma once

#include "imdswatch/metrics_writer.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

class CivetServer;

namespace imdswatch {

class WebSecurity;

struct HealthStatus {
  bool ok;
  std::string detail;
};

struct HttpRoutes {
  MetricsSources collectables;  // /metrics, in this order
  std::function<HealthStatus()> healthz;
  std::function<HealthStatus()> readyz;
  // extra JSON endpoints: path → body producer
  std::vector<std::pair<std::string, std::function<std::string()>>> json;
};

class HttpServer {
 public:
  // Binds listen_address ("HOST:PORT" or ":PORT"); null with *error on failure.
  // With security (--web.config.file): TLS on every path when it configures
  // TLS; authentication on every path but /healthz and /readyz; extra headers
  // on every answer.
  static std::unique_ptr<HttpServer> Start(const std::string& listen_address, HttpRoutes routes, std::string* error,
                                           std::shared_ptr<WebSecurity> security = nullptr);
  ~HttpServer();
  int port() const;

 private:
  HttpServer() = default;
  struct Handlers;
  std::unique_ptr<Handlers> handlers_;
  std::shared_ptr<WebSecurity> security_;
  std::unique_ptr<CivetServer> server_;
};

}  // namespace imdswatch
