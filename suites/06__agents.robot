*** Settings ***
Documentation    Concurrent agents: ${AGENTS}+ concurrent agents in < ${AGENTS_MAX_WALL}, without degradation (see
...              docs/targets.md).
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
${AGENTS} Concurrent Agents Complete In Under ${AGENTS_MAX_WALL}
    [Documentation]    conductor-loop's ``TestConcurrentAgents``: ${AGENTS} tasks started at once; wall time
    ...    from the first request until the last run ended.
    Run Concurrent Agents    ${AGENTS}    work_ms=${AGENT_WORK_MS}    timeout=${AGENTS_TIMEOUT}
    Every Agent Run Should Have Completed
    Get Agents Wall Time    <    ${AGENTS_MAX_WALL}

${AGENTS} Concurrent Agents Run Without Degradation
    [Documentation]    "50+ concurrent agents without degradation": the median run of ${AGENTS}
    ...    concurrent agents takes at most ${AGENTS_MAX_SLOWDOWN} times as long as a lone agent's.
    Run Concurrent Agents    1    work_ms=${AGENT_WORK_MS}    timeout=${AGENTS_TIMEOUT}
    Run Concurrent Agents    ${AGENTS}    work_ms=${AGENT_WORK_MS}    timeout=${AGENTS_TIMEOUT}
    Every Agent Run Should Have Completed
    Get Agent Run Duration    p95
    Get Agent Slowdown    <    ${AGENTS_MAX_SLOWDOWN}
