*** Settings ***
Documentation    The bus target through ``POST /api/v1/messages`` (> ${BUS_MIN_MSG_PER_S} msg/s over ${SWARM_WORKERS}
...              writers, every acknowledged message in the bus once) with every writer a pabot process. Needs
...              only the SUT's URL on a worker host, so it is the swarm to spread over machines.

Resource         ../resources/swarm.resource

Test Tags        swarm    bus    api    perf


*** Test Cases ***
Worker Posts Messages To The Task Bus For The Test Duration
    [Documentation]    One writer's share: from the common start it posts messages one after another over one
    ...    keep-alive connection for the window and hands in its counts and HDR histogram.
    [Tags]    swarm-worker
    Receive The Swarm Spec As A Worker
    Post Messages To The Task Bus From The Common Start
    Hand In The Worker Report
    [Teardown]    Leave The Swarm

Swarm Posting Messages Over HTTP Sustains Over ${BUS_MIN_MSG_PER_S} Messages Per Second With None Lost
    [Documentation]    The bus target (docs/targets.md) through the REST API with ${SWARM_WORKERS} writer processes:
    ...    the rate and p95 over every worker's requests from the exact merge; then every acknowledged message must be
    ...    in the task bus once.
    [Tags]    swarm-coordinator
    [Setup]    Attach To The Conductor Of The Swarm
    Open The Swarm    bus-http    duration=${BUS_DURATION}
    Start The Swarm When Every Worker Has Joined    timeout=${SWARM_BARRIER_TIMEOUT}
    Collect The Swarm Reports    grace=${SWARM_REPORT_GRACE}
    Get Swarm Rate    >    ${BUS_MIN_MSG_PER_S}
    Get Swarm Error Percentage    <    ${API_MAX_ERROR_PCT}
    Get Swarm Latency    p95
    Swarm Bus Should Have Every Message Exactly Once
