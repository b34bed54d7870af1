*** Settings ***
Documentation    The bus target (> ${BUS_MIN_MSG_PER_S} msg/s over ${SWARM_WORKERS} writers, every message present
...              once) with every writer a pabot process: file-level appends to one task bus under the SUT's
...              runs root, conductor-loop's own protocol (``O_APPEND`` + exclusive ``flock``), as agents write.
...
...              Run it with ``make swarm SCENARIO=bus WORKERS=10``: pabot runs the worker test once per worker,
...              the coordinator test merges their reports exactly. Workers on another host need the runs root
...              there too; across machines use the ``bus-http`` swarm.

Resource         ../resources/swarm.resource

Test Tags        swarm    bus    perf


*** Test Cases ***
Worker Appends Messages To The Task Bus For The Test Duration
    [Documentation]    One writer's share: from the swarm's common start it appends FACT messages to the swarm's
    ...    task bus for the window, records every append in an HDR histogram and hands its count in.
    [Tags]    swarm-worker
    Receive The Swarm Spec As A Worker
    Append Messages To The Task Bus From The Common Start
    Hand In The Worker Report
    [Teardown]    Leave The Swarm

Swarm Of Bus Writers Sustains Over ${BUS_MIN_MSG_PER_S} Messages Per Second With Every Message Once
    [Documentation]    conductor-loop's own bus throughput test (docs/targets.md) with ${SWARM_WORKERS} writer
    ...    processes: the rate is every writer's messages / the window, from the exact merge of their reports; the bus
    ...    must then hold every message once. A writer that failed or is missing fails the test, named.
    [Tags]    swarm-coordinator
    [Setup]    Attach To The Conductor Of The Swarm
    Open The Swarm    bus    duration=${BUS_DURATION}
    Start The Swarm When Every Worker Has Joined    timeout=${SWARM_BARRIER_TIMEOUT}
    Collect The Swarm Reports    grace=${SWARM_REPORT_GRACE}
    Get Swarm Rate    >    ${BUS_MIN_MSG_PER_S}
    Swarm Bus Should Have Every Message Exactly Once
    Get Swarm Latency    p95
