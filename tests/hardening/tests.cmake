# Hardening tests (kernel): Kubernetes API faults, ring-buffer overflow, pod
# churn, two agents on one node, secrets left in BPF maps. Built on the kernel tests' harness; each
# gtest case is its own CTest test (label kernel), and each prints its figures.
imdswatch_test(hardening_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/kube_faults_test.cpp ${CMAKE_CURRENT_LIST_DIR}/overflow_test.cpp
          ${CMAKE_CURRENT_LIST_DIR}/churn_test.cpp ${CMAKE_CURRENT_LIST_DIR}/two_agents_test.cpp
          ${CMAKE_CURRENT_LIST_DIR}/secrets_test.cpp
          ${CMAKE_CURRENT_LIST_DIR}/hardening.cpp ${CMAKE_CURRENT_SOURCE_DIR}/integration/harness.cpp
  LABELS kernel)
add_dependencies(hardening_test imdswatch)
if(IMDSWATCH_SANITIZE)
  target_compile_definitions(hardening_test PRIVATE IMDSWATCH_SANITIZED=1)
endif()
