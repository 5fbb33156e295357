imdswatch_test(classify_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/classify_test.cpp LABELS unit)
imdswatch_test(aggregator_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/aggregator_test.cpp LABELS unit)
