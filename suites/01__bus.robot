*** Settings ***
Documentation    Message bus targets (> ${BUS_MIN_MSG_PER_S} msg/s with ${BUS_WRITERS} writers for ${BUS_DURATION}; see
...              docs/targets.md for where each target comes from).
...
...              File-level tests append to a task bus under the SUT's runs root with conductor-loop's
...              own protocol (``O_APPEND`` + exclusive ``flock`` on the bus file), the way agents do.

Resource         ../resources/common.resource
Library          ../libraries/MessageBusLibrary.py

Suite Setup      Start Conductor For Suite
Test Setup       Acquire Measurement Lock
Test Teardown    Release Measurement Lock

Test Tags        bus    perf


*** Test Cases ***
Message Bus Sustains Over ${BUS_MIN_MSG_PER_S} Messages Per Second With ${BUS_WRITERS} Writers
    [Documentation]    conductor-loop's ``TestMessageBusThroughput``: ${BUS_WRITERS} writers append FACT messages to
    ...    one task bus for ${BUS_DURATION}; the rate is messages / duration. Every message must then be present once.
    Measure Bus Write Throughput    writers=${BUS_WRITERS}    duration=${BUS_DURATION}
    Get Bus Write Throughput    >    ${BUS_MIN_MSG_PER_S}
    Bus Should Have Every Message Exactly Once

Single Writer Appends Faster Than The Bus Target Requires
    [Documentation]    conductor-loop's ``BenchmarkMessageBusWrite``: one writer alone must keep up with the bus
    ...    target, so its p95 append (open, lock, write, unlock, close) must stay under ${BUS_APPEND_MAX_MS} ms.
    Measure Bus Append Cost    count=${BUS_APPEND_COUNT}
    Get Bus Append Latency    p95    <    ${BUS_APPEND_MAX_MS}

Reading A ${BUS_READ_ALL_MESSAGES} Message Bus Fits In The API Latency Budget
    [Documentation]    conductor-loop's ``BenchmarkMessageBusReadAll`` (${BUS_READ_ALL_MESSAGES} messages).
    ...    GET /api/v1/messages parses the whole bus on every call, so a full read must fit in the API's
    ...    p95 < ${BUS_READ_ALL_MAX_MS} ms.
    Measure Bus Read All Cost    messages=${BUS_READ_ALL_MESSAGES}
    Get Bus Read All Latency    p95    <    ${BUS_READ_ALL_MAX_MS}
