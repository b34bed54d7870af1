*** Settings ***
Documentation    The API target (> ${API_MIN_REQ_PER_S} req/s, p95 < ${API_P95_MAX_MS} ms) on ``GET /api/v1/health``
...              with the load from ${SWARM_WORKERS} pabot processes of ${SWARM_API_CONNECTIONS} connections each:
...              the swarm to use when one generator process saturates before the server does.

Resource         ../resources/swarm.resource

Test Tags        swarm    api    perf


*** Test Cases ***
Worker Loads The Health Endpoint For The Test Duration
    [Documentation]    One worker's share: a closed loop on its own connections from the common start for the
    ...    window; it hands in its counts, statuses and HDR histogram.
    [Tags]    swarm-worker
    Receive The Swarm Spec As A Worker
    Load The Endpoint From The Common Start
    Hand In The Worker Report
    [Teardown]    Leave The Swarm

Swarm Load On GET Health Is Served Over ${API_MIN_REQ_PER_S} Requests Per Second With p95 Under ${API_P95_MAX_MS} Ms
    [Documentation]    The API target (docs/targets.md) with the load spread over processes: the rate, the error ratio
    ...    and the p95 over every worker's requests, from the exact merge of their histograms.
    [Tags]    swarm-coordinator
    [Setup]    Attach To The Conductor Of The Swarm
    Open The Swarm    api    duration=${API_DURATION}    path=/api/v1/health    connections=${SWARM_API_CONNECTIONS}
    Start The Swarm When Every Worker Has Joined    timeout=${SWARM_BARRIER_TIMEOUT}
    Collect The Swarm Reports    grace=${SWARM_REPORT_GRACE}
    Get Swarm Rate    >    ${API_MIN_REQ_PER_S}
    Get Swarm Error Percentage    <    ${API_MAX_ERROR_PCT}
    Get Swarm Latency    p95    <    ${API_P95_MAX_MS}
