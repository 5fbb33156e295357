# Unit tests of the attribution modules, one binary per module.
imdswatch_test(cgroup_path_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/cgroup_path_test.cpp LABELS unit)
imdswatch_test(cgroup_resolver_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/cgroup_resolver_test.cpp LABELS unit)
imdswatch_test(pod_store_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/pod_store_test.cpp LABELS unit)
imdswatch_test(kube_client_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/kube_client_test.cpp LABELS unit)
imdswatch_test(attributor_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/attributor_test.cpp LABELS unit)
