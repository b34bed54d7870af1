*** Settings ***
Documentation    The SSE targets (${SSE_CLIENTS} concurrent clients, delivery p95 < ${SSE_LATENCY_MAX_MS} ms, every
...              message once and in order) with the clients spread over ${SWARM_WORKERS} pabot processes, all
...              following one task bus's ``/api/v1/messages/stream``. The coordinator posts the stamped
...              messages once every client of every worker is subscribed. Latency is receive time minus the
...              send time in the message (wall clocks: hosts of one swarm need synchronised clocks).

Resource         ../resources/swarm.resource

Test Tags        swarm    sse    perf


*** Test Cases ***
Worker Follows The Message Stream With Its Share Of The Clients
    [Documentation]    One worker's share: from the common start its clients subscribe to the stream and record
    ...    every stamped message they receive until the end marker; their records come back in its report.
    [Tags]    swarm-worker
    Receive The Swarm Spec As A Worker
    Follow The Message Stream Until The End Marker
    Hand In The Worker Report
    [Teardown]    Leave The Swarm

Swarm Of SSE Clients Receives Every Message Within ${SSE_LATENCY_MAX_MS} Ms At p95
    [Documentation]    The SSE delivery and client-count targets (docs/targets.md) from ${SWARM_WORKERS} processes:
    ...    ${SSE_LATENCY_EVENTS} messages ${SSE_EVENT_INTERVAL} apart to ${SSE_CLIENTS} clients; none refused, each
    ...    client gets every message once in the bus file's order, p95 over every client of every worker.
    [Tags]    swarm-coordinator
    [Setup]    Attach To The Conductor Of The Swarm
    Open The Swarm    sse    clients=${SSE_CLIENTS}    messages=${SSE_LATENCY_EVENTS}
    ...    interval=${SSE_EVENT_INTERVAL}    timeout=${SSE_WAIT_TIMEOUT}
    Start The Swarm When Every Worker Has Joined    timeout=${SWARM_BARRIER_TIMEOUT}
    Collect The Swarm Reports    grace=${SWARM_REPORT_GRACE}
    Get Swarm Refused SSE Clients    ==    0
    Every Swarm SSE Client Should Have Received Every Message Once In Order
    Get Swarm Latency    p95    <    ${SSE_LATENCY_MAX_MS}
