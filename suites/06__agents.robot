*** Settings ***
Documentation    Concurrent agents: seed sections 3 and 9 (50+ concurrent agents in < 5 min, without
...              degradation).
...
...              Every task runs the stub ``codex`` agent for ``${AGENT_WORK_MS}`` ms through
...              ``POST /api/v1/tasks``; a run counts when its ``run-info.yaml`` says ``completed``.

Resource         ../resources/common.resource
Library          ../libraries/AgentLibrary.py

Suite Setup      Start Conductor For Suite
Test Setup       Acquire Measurement Lock
Test Teardown    Release Measurement Lock

Test Tags        agents    perf


*** Test Cases ***
Fifty Concurrent Agents Complete In Under Five Minutes
    [Documentation]    Seed ``TestConcurrentAgents``: 50 tasks started at once; wall time from the first
    ...    request until the last run ended.
    Run Concurrent Agents    ${AGENTS}    work_ms=${AGENT_WORK_MS}    timeout=${AGENTS_TIMEOUT}
    Every Agent Run Should Have Completed
    Get Agents Wall Time    <    ${AGENTS_MAX_WALL}

Fifty Concurrent Agents Run Without Degradation
    [Documentation]    Seed section 9 "50+ concurrent agents without degradation": the median run of 50
    ...    concurrent agents takes at most ${AGENTS_MAX_SLOWDOWN} times as long as a lone agent's.
    Run Concurrent Agents    1    work_ms=${AGENT_WORK_MS}    timeout=${AGENTS_TIMEOUT}
    Run Concurrent Agents    ${AGENTS}    work_ms=${AGENT_WORK_MS}    timeout=${AGENTS_TIMEOUT}
    Every Agent Run Should Have Completed
    Get Agent Run Duration    p95
    Get Agent Slowdown    <    ${AGENTS_MAX_SLOWDOWN}
