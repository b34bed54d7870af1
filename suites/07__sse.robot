*** Settings ***
Documentation    Server-Sent Events targets: event delivery < ${SSE_LATENCY_MAX_MS} ms, ${SSE_CLIENTS}+ concurrent
...              SSE clients, ${SSE_MESSAGES_IN_FLIGHT}+ messages in flight (see docs/targets.md).
...
...              Every measured event carries its send time: a line appended (and fsynced) to a running stub
...              run's ``agent-stdout.txt``, or the body of a message posted with ``POST /api/v1/messages``.
...              Latency is each client's receive time minus that send time. Measured events are sent only
...              once every client is subscribed (primer events prove it), one every ${SSE_EVENT_INTERVAL}
...              unless a test says otherwise. Without the runs root the stub agent prints the timestamped
...              lines itself.

Resource         ../resources/common.resource
Library          ../libraries/SSELibrary.py

Suite Setup      Start Conductor For Suite
Test Setup       Acquire Measurement Lock
Test Teardown    Release Measurement Lock

Test Tags        sse    perf


*** Test Cases ***
SSE Delivers Log Lines In Under ${SSE_LATENCY_MAX_MS} Ms
    [Documentation]    conductor-loop's ``TestSSELatency``: one client follows a running stub run's
    ...    ``/api/v1/runs/{id}/stream`` while ${SSE_LATENCY_EVENTS} timestamped lines are appended to the
    ...    run's ``agent-stdout.txt``; every line must arrive as a ``log`` event, p95 under the target.
    Measure Log Delivery Latency    ${SSE_LATENCY_EVENTS}    clients=1    interval=${SSE_EVENT_INTERVAL}
    ...    timeout=${SSE_WAIT_TIMEOUT}    processes=${SSE_CLIENT_PROCESSES}
    Every SSE Client Should Have Received Every Event Once In Order
    Get SSE Delivery Latency    p95    <    ${SSE_LATENCY_MAX_MS}
    Get SSE Delivery Latency    p50
    Get SSE Delivery Latency    max

${SSE_CLIENTS} Concurrent SSE Clients Each Receive Every Log Line
    [Documentation]    "100+ concurrent SSE clients": ${SSE_CLIENTS} clients follow one run's
    ...    stream; each must get every line appended after all subscribed, once and in order. The real
    ...    server refuses clients above ``api.sse.max_clients_per_run`` (10 by default) with HTTP 429.
    Measure Log Delivery Latency    ${SSE_LATENCY_EVENTS}    clients=${SSE_CLIENTS}
    ...    interval=${SSE_EVENT_INTERVAL}    timeout=${SSE_WAIT_TIMEOUT}    processes=${SSE_CLIENT_PROCESSES}
    Get Refused SSE Clients    ==    0
    Every SSE Client Should Have Received Every Event Once In Order
    Get SSE Delivery Latency    p95    <    ${SSE_LATENCY_MAX_MS}

Message Stream Delivers To ${SSE_CLIENTS} Clients In ${SSE_LATENCY_MAX_MS} Ms On A ${SSE_BUS_HISTORY} Message Bus
    [Documentation]    With a realistic history: ${SSE_CLIENTS} clients follow
    ...    ``/api/v1/messages/stream`` of a task bus that already holds ${SSE_BUS_HISTORY} messages while
    ...    ${SSE_LATENCY_EVENTS} timestamped messages are posted; p95 over every client under the target.
    Create Message Bus History    messages=${SSE_BUS_HISTORY}    timeout=${SSE_WAIT_TIMEOUT}
    Measure Message Delivery Latency    ${SSE_LATENCY_EVENTS}    clients=${SSE_CLIENTS}
    ...    interval=${SSE_EVENT_INTERVAL}    timeout=${SSE_WAIT_TIMEOUT}    processes=${SSE_CLIENT_PROCESSES}
    Get Refused SSE Clients    ==    0
    Every SSE Client Should Have Received Every Event Once In Order
    Get SSE Delivery Latency    p95    <    ${SSE_LATENCY_MAX_MS}

Clients Receive ${SSE_MESSAGES_IN_FLIGHT} Messages In Flight In Order Exactly Once
    [Documentation]    "1000+ messages in flight": ${SSE_IN_FLIGHT_WRITERS} writers post
    ...    ${SSE_MESSAGES_IN_FLIGHT} messages as fast as they can while ${SSE_IN_FLIGHT_CLIENTS} clients
    ...    listen; each client must receive the bus file order (``GET /api/v1/messages``) exactly once.
    Measure Messages In Flight    ${SSE_MESSAGES_IN_FLIGHT}    clients=${SSE_IN_FLIGHT_CLIENTS}
    ...    writers=${SSE_IN_FLIGHT_WRITERS}    timeout=${SSE_WAIT_TIMEOUT}    processes=${SSE_CLIENT_PROCESSES}
    Get Refused SSE Clients    ==    0
    Every SSE Client Should Have Received Every Event Once In Order
    Get SSE Delivery Latency    p95
