# Kernel tests: need root, BPF and the built agent; with CI=true a skip is a failure.
imdswatch_test(pipeline_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/pipeline_test.cpp ${CMAKE_CURRENT_LIST_DIR}/harness.cpp
  LABELS kernel SHARED_SETUP)
add_dependencies(pipeline_test imdswatch)
imdswatch_test(lifecycle_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/lifecycle_test.cpp ${CMAKE_CURRENT_LIST_DIR}/harness.cpp
  LABELS kernel SHARED_SETUP)
add_dependencies(lifecycle_test imdswatch)
imdswatch_test(kfree_filter_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/kfree_filter_test.cpp ${CMAKE_CURRENT_LIST_DIR}/harness.cpp
  LABELS kernel)
add_dependencies(kfree_filter_test imdswatch)
