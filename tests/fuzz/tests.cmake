# libFuzzer targets (tests/fuzz/fuzz_*.cpp): one CTest test per target, label
# "fuzz". They are built by their own clang project (tests/fuzz/CMakeLists.txt)
# through tests/fuzz/run.sh: the fuzz_build test does that once (a fixture the
# others require, so `ctest -R fuzz_http_request` builds first), then each
# fuzz_<target> runs for IMDSWATCH_FUZZ_SECONDS from tests/fuzz/corpus/<target>/
# and fails on any crash, sanitizer report or broken invariant.
set(IMDSWATCH_FUZZ_SECONDS 30 CACHE STRING "Seconds each libFuzzer target runs in its CTest test")
set(_fuzz_dir ${CMAKE_BINARY_DIR}/fuzz)
add_test(NAME fuzz_build COMMAND ${CMAKE_CURRENT_LIST_DIR}/run.sh --build-dir ${_fuzz_dir} --build-only)
set_tests_properties(fuzz_build PROPERTIES LABELS fuzz FIXTURES_SETUP imdswatch_fuzz_build TIMEOUT 2400)
file(GLOB _fuzz_sources ${CMAKE_CURRENT_LIST_DIR}/fuzz_*.cpp)
foreach(_source ${_fuzz_sources})
  get_filename_component(_target ${_source} NAME_WE)
  add_test(NAME ${_target}
           COMMAND ${CMAKE_CURRENT_LIST_DIR}/run.sh --build-dir ${_fuzz_dir} --no-build
                   --seconds ${IMDSWATCH_FUZZ_SECONDS} ${_target})
  math(EXPR _timeout "${IMDSWATCH_FUZZ_SECONDS} * 3 + 120")
  set_tests_properties(${_target} PROPERTIES LABELS fuzz FIXTURES_REQUIRED imdswatch_fuzz_build
                       TIMEOUT ${_timeout})
endforeach()
