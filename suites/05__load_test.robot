*** Settings ***
Documentation    The seed's load test (section 8): 100 concurrent ``POST /api/v1/tasks`` with valid
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
One Hundred Concurrent Task Submissions Answer Within 50 Ms At p95
    [Documentation]    Seed 8 and 9: the burst of 100 requests, each answered 201; API p95 < 50 ms.
    Record File System State
    Run Concurrent Agents    ${LOAD_TEST_TASKS}    work_ms=${LOAD_TEST_WORK_MS}    timeout=${LOAD_TEST_TIMEOUT}
    Get Task Submission Latency    p95    <    ${LOAD_TEST_P95_MAX_MS}
    Every Agent Run Should Have Completed
    Get Agents Wall Time    <    ${LOAD_TEST_TIMEOUT}
