imdswatch_test(classify_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/classify_test.cpp LABELS unit)
imdswatch_test(aggregator_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/aggregator_test.cpp ${CMAKE_CURRENT_LIST_DIR}/exposition.cpp LABELS unit)
imdswatch_test(metrics_writer_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/metrics_writer_test.cpp ${CMAKE_CURRENT_LIST_DIR}/exposition.cpp LABELS unit)
