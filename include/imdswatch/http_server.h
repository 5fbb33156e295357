// The agent's HTTP endpoint (civetweb, the server prometheus-cpp itself
// embeds): /metrics rendered by prometheus-cpp's serializer, /healthz,
// /readyz, and JSON for `imdswatch doctor`.
#pragma once

#include <prometheus/collectable.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

class CivetServer;

namespace imdswatch {

struct HealthStatus {
  bool ok;
  std::string detail;
};

struct HttpRoutes {
  std::vector<std::weak_ptr<prometheus::Collectable>> collectables;
  std::function<HealthStatus()> healthz;
  std::function<HealthStatus()> readyz;
  // extra JSON endpoints: path → body producer
  std::vector<std::pair<std::string, std::function<std::string()>>> json;
};

class HttpServer {
 public:
  // Binds listen_address ("HOST:PORT" or ":PORT"); null with *error on failure.
  static std::unique_ptr<HttpServer> Start(const std::string& listen_address, HttpRoutes routes, std::string* error);
  ~HttpServer();
  int port() const;

 private:
  HttpServer() = default;
  struct Handlers;
  std::unique_ptr<Handlers> handlers_;
  std::unique_ptr<CivetServer> server_;
};

// Renders collectables in the Prometheus text format.
std::string RenderMetrics(const std::vector<std::weak_ptr<prometheus::Collectable>>& collectables);

}  // namespace imdswatch
