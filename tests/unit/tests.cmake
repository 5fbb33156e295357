# Unit tests of the agent's own modules (the attribution and metrics modules
# list theirs in attribution.cmake and metrics.cmake).
imdswatch_test(http_parse_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/http_parse_test.cpp ${CMAKE_CURRENT_LIST_DIR}/http_parse_harness.cpp
  LABELS unit)
imdswatch_test(call_tracker_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/call_tracker_test.cpp LABELS unit)
imdswatch_test(event_decoder_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/event_decoder_test.cpp LABELS unit)
imdswatch_test(config_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/config_test.cpp LABELS unit)
imdswatch_test(packet_filter_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/packet_filter_test.cpp LABELS unit)
imdswatch_test(kernel_symbols_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/kernel_symbols_test.cpp LABELS unit)
