# Hardening tests (kernel): Kubernetes API faults, ring-buffer overflow, pod
# churn, two agents on one node, secrets left in BPF maps, a full set of the
# kernel's socket table, load (50 pods at 1,000 requests/s). Built on the kernel tests' harness; each gtest case is its
# own CTest test (label kernel), and each prints its figures.
imdswatch_test(hardening_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/kube_faults_test.cpp ${CMAKE_CURRENT_LIST_DIR}/overflow_test.cpp
          ${CMAKE_CURRENT_LIST_DIR}/churn_test.cpp ${CMAKE_CURRENT_LIST_DIR}/two_agents_test.cpp
          ${CMAKE_CURRENT_LIST_DIR}/secrets_test.cpp ${CMAKE_CURRENT_LIST_DIR}/load_test.cpp
          ${CMAKE_CURRENT_LIST_DIR}/socket_table_test.cpp
          ${CMAKE_CURRENT_LIST_DIR}/hardening.cpp ${CMAKE_CURRENT_SOURCE_DIR}/integration/harness.cpp
  LABELS kernel)
add_dependencies(hardening_test imdswatch)
# The load test's load generator: one process per pod, a fixed rate on keep-alive connections.
add_executable(imds_load_client ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/imds_load_client.cpp)
add_dependencies(hardening_test imds_load_client)
target_compile_definitions(hardening_test PRIVATE IMDSWATCH_LOAD_CLIENT="$<TARGET_FILE:imds_load_client>")
if(IMDSWATCH_SANITIZE)
  target_compile_definitions(hardening_test PRIVATE IMDSWATCH_SANITIZED=1)
endif()
