#include "imdswatch/http_server.h"

#include <CivetServer.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

namespace imdswatch {

std::string RenderMetrics(const std::vector<std::weak_ptr<prometheus::Collectable>>& collectables) {
  std::vector<prometheus::MetricFamily> families;
  for (const auto& weak : collectables) {
    if (auto collectable = weak.lock()) {
      auto more = collectable->Collect();
      families.insert(families.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
    }
  }
  return prometheus::TextSerializer().Serialize(families);
}

namespace {

void Reply(mg_connection* conn, int status, const char* content_type, const std::string& body) {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
            status, mg_get_response_code_text(conn, status), content_type, body.size());
  mg_write(conn, body.data(), body.size());
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
                                              std::string* error) {
  std::string ports = listen_address;
  if (!ports.empty() && ports.front() == ':') ports = "0.0.0.0" + ports;
  std::unique_ptr<HttpServer> server(new HttpServer());
  server->handlers_ = std::make_unique<Handlers>();
  server->handlers_->routes = std::move(routes);
  const std::vector<std::string> options = {"listening_ports", ports, "num_threads", "4",
                                            "request_timeout_ms", "10000"};
  try {
    server->server_ = std::make_unique<CivetServer>(options);
  } catch (const CivetException& e) {
    *error = "cannot listen on " + listen_address + " (--web.listen-address): " + e.what() +
             " (is the port in use?)";
    return nullptr;
  }
  Handlers* h = server->handlers_.get();
  auto add = [&](const std::string& uri, std::function<void(mg_connection*)> fn) {
    h->handlers.push_back(std::make_unique<Handler>(std::move(fn)));
    server->server_->addHandler(uri, h->handlers.back().get());
  };
  add("/metrics", [h](mg_connection* conn) {
    Reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8", RenderMetrics(h->routes.collectables));
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
