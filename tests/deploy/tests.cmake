# Deploy, alert-rule and dashboard tests (issue 5): Debian's /usr/bin/python3 with python3-yaml, and Debian's
# prometheus package (promtool, the Prometheus server). The last two need root, BPF and the built agent; with
# CI=true they fail rather than skip when they cannot run.
set(IMDSWATCH_DEPLOY_TESTS ${CMAKE_CURRENT_LIST_DIR})
set(IMDSWATCH_DEPLOY_PY /usr/bin/python3)
set(IMDSWATCH_DEPLOY_ENV "IMDSWATCH_BINARY_DIR=${CMAKE_BINARY_DIR}")

foreach(check manifests image dashboards)
  add_test(NAME deploy_${check} COMMAND ${IMDSWATCH_DEPLOY_PY} ${IMDSWATCH_DEPLOY_TESTS}/check_${check}.py)
  set_tests_properties(deploy_${check} PROPERTIES LABELS "unit;deploy" ENVIRONMENT "${IMDSWATCH_DEPLOY_ENV}"
                       TIMEOUT 120)
endforeach()

add_test(NAME deploy_rules_consistency COMMAND ${IMDSWATCH_DEPLOY_PY} ${IMDSWATCH_DEPLOY_TESTS}/check_rules.py)
add_test(NAME deploy_rules_promtool_check
         COMMAND promtool check rules ${CMAKE_SOURCE_DIR}/deploy/rules/imdswatch.rules.yml)
file(GLOB IMDSWATCH_RULE_TESTS CONFIGURE_DEPENDS ${IMDSWATCH_DEPLOY_TESTS}/rules/*.test.yml)
add_test(NAME deploy_rules_promtool_test COMMAND promtool test rules ${IMDSWATCH_RULE_TESTS})
set_tests_properties(deploy_rules_consistency deploy_rules_promtool_check deploy_rules_promtool_test
                     PROPERTIES LABELS "unit;deploy" TIMEOUT 120)

# Kernel tests: they attach at the cgroup root and time things, so they run alone.
add_test(NAME deploy_capabilities COMMAND ${IMDSWATCH_DEPLOY_PY} ${IMDSWATCH_DEPLOY_TESTS}/capabilities_test.py)
add_test(NAME deploy_e2e_prometheus COMMAND ${IMDSWATCH_DEPLOY_PY} ${IMDSWATCH_DEPLOY_TESTS}/e2e_prometheus_test.py)
set_tests_properties(deploy_capabilities deploy_e2e_prometheus PROPERTIES
                     LABELS "kernel;deploy" ENVIRONMENT "${IMDSWATCH_DEPLOY_ENV}" RUN_SERIAL TRUE
                     SKIP_RETURN_CODE 77 TIMEOUT 600)
