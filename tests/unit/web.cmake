# --web.config.file: the parser, and the endpoint with TLS and authentication as curl and openssl meet it.
imdswatch_test(web_config_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/web_config_test.cpp LABELS unit)
imdswatch_test(web_server_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/web_server_test.cpp LABELS unit)
# It also runs the agent binary on bad files.
add_dependencies(web_server_test imdswatch)
