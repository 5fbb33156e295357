# The benchmark's own check: bench/ builds against this build, and a short part 3 runs with this build's
# agent. Figures are not judged here (bench/run.sh prints them); what is checked is that every condition
# measured something and that the counting floor did its work. Needs root and BPF; with CI=true it fails
# rather than skips when it cannot run.
add_test(NAME bench_smoke COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/smoke_test.py)
set_tests_properties(bench_smoke PROPERTIES
                     LABELS "bench" ENVIRONMENT "IMDSWATCH_BINARY_DIR=${CMAKE_BINARY_DIR}" RUN_SERIAL TRUE
                     SKIP_RETURN_CODE 77 TIMEOUT 600)
