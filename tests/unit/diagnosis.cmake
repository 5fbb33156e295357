# Unit tests of the diagnosis modules (diagnoser, doctor).
imdswatch_test(diagnoser_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/diagnoser_test.cpp ${CMAKE_CURRENT_LIST_DIR}/exposition.cpp LABELS unit)
imdswatch_test(doctor_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/doctor_test.cpp LABELS unit)
