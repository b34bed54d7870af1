*** Settings ***
Documentation    Reliability: nothing lost, torn or delayed under contention, and faults of
...              the system under test handled cleanly.
...
...              File-level tests use the SUT's runs root (skipped without it). Fault tests kill or
...              restart the SUT, so they run where the suite owns it (capability ``can_restart``: the
...              embedded conductor or a conductor-loop binary it started); their teardown brings up a
...              fresh one on the same runs root for the tests and suites that follow.

Resource         ../resources/common.resource
Library          ../libraries/ReliabilityLibrary.py
Library          ../libraries/ApiLoadLibrary.py

Suite Setup      Start Conductor For Suite
Test Setup       Acquire Measurement Lock
Test Teardown    Release Measurement Lock

Test Tags        reliability


*** Test Cases ***
${RELIABILITY_BUS_WRITERS} Writer Processes Appending To One Bus File Lose No Message
    [Documentation]    ``${RELIABILITY_BUS_WRITERS}`` processes append to one task bus with conductor-loop's
    ...    protocol; every message must then be in the file exactly once, none torn.
    [Tags]    bus
    Measure Bus Contention    writers=${RELIABILITY_BUS_WRITERS}    duration=${RELIABILITY_BUS_DURATION}
    Contended Bus Should Have Every Message Exactly Once

${RELIABILITY_BUS_WRITERS} Writers In ${RELIABILITY_PROCESSES} Processes Posting Over HTTP Lose No Message
    [Documentation]    ``${RELIABILITY_BUS_WRITERS}`` clients in ``${RELIABILITY_PROCESSES}`` processes post
    ...    to one task bus; every acknowledged message must come back exactly once.
    [Tags]    bus    api
    Measure Bus Contention Over HTTP
    ...    writers=${RELIABILITY_BUS_WRITERS}
    ...    processes=${RELIABILITY_PROCESSES}
    ...    duration=${RELIABILITY_BUS_DURATION}
    Contended Bus Should Have Every Message Exactly Once

Run Info Readers Never See A Torn File In ${RUN_INFO_ATOMIC_READS} Reads
    [Documentation]    Readers read one ``run-info.yaml`` without a lock while writers update it under the lock;
    ...    no read may be unparsable or mix two versions, and no update may be lost.
    [Tags]    storage
    Measure Run Info Atomicity
    ...    readers=${RUN_INFO_ATOMIC_READERS}
    ...    writers=${RUN_INFO_ATOMIC_WRITERS}
    ...    reads=${RUN_INFO_ATOMIC_READS}
    ...    max_duration=${RUN_INFO_ATOMIC_TIMEOUT}
    Get Run Info Reads    >=    ${RUN_INFO_ATOMIC_READS}
    Get Torn Or Unparsable Run Info Reads    ==    0
    Get Lost Run Info Updates    ==    0

Every SSE Subscriber Receives A ${SSE_BURST_LINES} Line Burst Completely And In Order
    [Documentation]    ``${SSE_BURST_LINES}`` lines appended at once to a running run's stdout reach each of
    ...    ``${SSE_BURST_SUBSCRIBERS}`` subscribers, all of them, in file order.
    [Tags]    sse
    Measure SSE Burst Delivery    lines=${SSE_BURST_LINES}    subscribers=${SSE_BURST_SUBSCRIBERS}
    Get SSE Burst Lines Lost    ==    0
    Get SSE Burst Lines Out Of Order    ==    0

A Slow SSE Subscriber Does Not Delay The Others Beyond The Latency Target
    [Documentation]    The same burst with a subscriber that reads nothing (its buffers filled first): the
    ...    others still get every line, within the SSE delivery target at p95.
    [Tags]    sse
    Measure SSE Burst Delivery
    ...    lines=${SSE_BURST_LINES}
    ...    subscribers=${SSE_BURST_SUBSCRIBERS}
    ...    slow_subscribers=${SSE_SLOW_SUBSCRIBERS}
    Get SSE Burst Lines Lost    ==    0
    Get SSE Burst Delivery Latency    p95    <    ${SSE_LATENCY_MAX_MS}

A Load Test Fails Within Seconds When The Conductor Is Killed
    [Documentation]    SIGKILL of the SUT ``${FAULT_KILL_AFTER}`` into a ``${FAULT_LOAD_DURATION}`` load test:
    ...    the test fails at once with one line naming the cause, and what was measured is saved.
    [Setup]    Prepare Fault Test    kills the conductor in the middle of a load test
    Kill Conductor    after=${FAULT_KILL_AFTER}
    Run Keyword And Expect Error    conductor died: *
    ...    Run Keyword And Fail Fast If Conductor Dies
    ...    Measure Message Posting    writers=${RELIABILITY_BUS_WRITERS}    duration=${FAULT_LOAD_DURATION}
    Get Time From Kill To Failure    <    ${FAULT_FAIL_WITHIN_S}
    Metrics Measured So Far Should Be Saved
    [Teardown]    Restart A Killed Conductor

A Killed Conductor Is Replaced By A Fresh One For The Next Suite
    [Documentation]    The set-up every suite runs notices a dead conductor it owns and starts a fresh one
    ...    on the same runs root.
    [Setup]    Prepare Fault Test    kills the conductor
    ${old_pid} =    Get Conductor Process Id
    Kill Conductor
    Start Conductor For Suite
    Conductor Should Be A Fresh Process    ${old_pid}
    Conductor Should Be Healthy
    [Teardown]    Restart A Killed Conductor

An SSE Client Resumes After A Conductor Restart Without Missing A Line
    [Documentation]    The SUT is killed under a subscriber of a running run and started again on the same
    ...    runs root while lines keep coming; the subscriber resumes with ``Last-Event-ID``.
    [Tags]    sse
    [Setup]    Prepare Fault Test    restarts the conductor under an SSE client
    Measure SSE Resume Across Restart
    ...    before=${SSE_RESUME_LINES}
    ...    during=${SSE_RESUME_LINES}
    ...    after=${SSE_RESUME_LINES}
    Get SSE Lines Missed After Restart    ==    0
    Get SSE Lines Repeated After Restart    ==    0
    [Teardown]    Restart A Killed Conductor


*** Keywords ***
Prepare Fault Test
    [Documentation]    Fault tests need a conductor the suite owns (they kill it) and the measurement lock.
    [Arguments]    ${why}
    Skip Unless Conductor Has    can_restart    ${why}
    Acquire Measurement Lock

Restart A Killed Conductor
    [Documentation]    Release the lock, and start a fresh conductor on the same runs root if this one died.
    Release Measurement Lock
    Restart Conductor    if_down=${True}
