*** Settings ***
Documentation    conductor-loop's load test (docs/targets.md: ${LOAD_TEST_TASKS} concurrent ``POST /api/v1/tasks``,
...              every one answered 201 with p95 < ${LOAD_TEST_P95_MAX_MS} ms, then every run completes) with the
...              submissions shared by ${SWARM_WORKERS} pabot processes, released together at the common start.

Resource         ../resources/swarm.resource

Test Tags        swarm    load    api    perf


*** Test Cases ***
Worker Submits Its Share Of The Tasks At The Common Start
    [Documentation]    One worker's share: its tasks' connections are opened and warmed first; every submission
    ...    is sent at the common start and timed to its last response byte.
    [Tags]    swarm-worker
    Receive The Swarm Spec As A Worker
    Submit Tasks At The Common Start
    Hand In The Worker Report
    [Teardown]    Leave The Swarm

Swarm Of Task Submissions Is Answered Within ${LOAD_TEST_P95_MAX_MS} Ms At p95 And Every Run Completes
    [Documentation]    The load test and the API p95 target (docs/targets.md) from ${SWARM_WORKERS} processes: p95
    ...    over every submission of every worker from the exact merge, every answer 201, then every run completed.
    [Tags]    swarm-coordinator
    [Setup]    Attach To The Conductor Of The Swarm
    Open The Swarm    tasks    tasks=${LOAD_TEST_TASKS}    work_ms=${LOAD_TEST_WORK_MS}    timeout=${LOAD_TEST_TIMEOUT}
    Start The Swarm When Every Worker Has Joined    timeout=${SWARM_BARRIER_TIMEOUT}
    Collect The Swarm Reports    grace=${SWARM_REPORT_GRACE}
    Get Swarm Latency    p95    <    ${LOAD_TEST_P95_MAX_MS}
    Get Swarm Error Percentage    ==    0
    Every Swarm Task Run Should Complete    timeout=${LOAD_TEST_TIMEOUT}
