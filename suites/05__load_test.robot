*** Settings ***
Documentation    conductor-loop's load test: ${LOAD_TEST_TASKS} concurrent ``POST /api/v1/tasks`` with valid
...              bodies. Every request gets 201 quickly, then every run completes.
...
...              The same test runs without Robot: ``scripts/load-test.sh URL``.

Resource         ../resources/common.resource
Library          ../libraries/AgentLibrary.py

Suite Setup      Start Conductor For Suite
Test Setup       Acquire Measurement Lock
Test Teardown    Release Measurement Lock

Test Tags        load    api    perf


*** Test Cases ***
${LOAD_TEST_TASKS} Concurrent Task Submissions Answer Within ${LOAD_TEST_P95_MAX_MS} Ms At p95
    [Documentation]    The burst of ${LOAD_TEST_TASKS} requests, each answered 201; the API's p95 target.
    Record File System State
    Run Concurrent Agents    ${LOAD_TEST_TASKS}    work_ms=${LOAD_TEST_WORK_MS}    timeout=${LOAD_TEST_TIMEOUT}
    Get Task Submission Latency    p95    <    ${LOAD_TEST_P95_MAX_MS}
    Every Agent Run Should Have Completed
    Get Agents Wall Time    <    ${LOAD_TEST_TIMEOUT}
