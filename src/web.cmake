# --web.config.file: the exporter-toolkit web config, TLS and authentication of the HTTP endpoint.
list(APPEND IMDSWATCH_SOURCES web_config.cpp web_security.cpp)
