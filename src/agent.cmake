# The agent proper: kernel probes, event decoding, joining, export, CLI.
list(APPEND IMDSWATCH_SOURCES endpoint.cpp kernel_symbols.cpp packet_filter.cpp preflight.cpp probes.cpp event_decoder.cpp call_tracker.cpp
  self_health.cpp http_server.cpp config.cpp logging.cpp event_loop.cpp trace_printer.cpp pipeline.cpp agent.cpp
  doctor_command.cpp process_stats.cpp)
