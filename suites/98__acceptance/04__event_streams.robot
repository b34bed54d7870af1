*** Settings ***
Documentation    Server-Sent Events: the run stream sends the run's status, its log lines and its final
...              status in order; streams resume from ``Last-Event-ID`` without gaps or repeats; heartbeats
...              arrive at the configured interval (``docs/api-behaviour.md``, "Server-Sent Events").

Resource         ../../resources/acceptance.resource

Test Teardown    Close All Event Streams

Test Tags        sse


*** Test Cases ***
A Run Stream Sends Status, Log Lines And The Final Status In Order
    [Documentation]    A subscriber of a running run receives ``status`` running, one ``log`` event per stdout
    ...    line (cursor ids counting up), then ``status`` completed with exit code 0 (rules run-stream,
    ...    sse-headers).
    ${task} =    New Task Id    stream
    ${run} =    Submit Task    ${task}    STUB_START_DELAY_MS=1500    STUB_STDOUT_TEXT=alpha|beta|gamma
    ...    STUB_LINE_DELAY_MS=100
    Wait Until Run Is Running    ${run}
    Open Run Stream    ${run}
    Wait Until Stream Has Event    status    name=run    status=completed    timeout=${ACCEPT_STREAM_TIMEOUT}
    Stream Event Names Should Be    status    log    log    log    status    name=run
    Stream Log Lines Should Be    alpha    beta    gamma    name=run
    Stream Events Should Have Shape    log    log event    name=run
    Stream Events Should Have Shape    status    status event    name=run
    Task Should Be Done After Its Run    ${PROJECT}    ${task}    ${run}

A Run Stream Resumes After A Log Cursor
    [Documentation]    Opened with ``Last-Event-ID: s=1;e=0`` on a run that wrote three lines, the stream replays
    ...    the two lines after the cursor and not the first (rule run-stream-resume).
    ${task} =    New Task Id    resume
    ${run} =    Run A Task To Its End    ${task}    STUB_STDOUT_TEXT=alpha|beta|gamma
    Open Run Stream    ${run}    last_event_id=s=1;e=0
    Wait Until Stream Has Events    2    event=log    name=run    timeout=${ACCEPT_STREAM_TIMEOUT}
    Stream Should Stay Quiet    name=run    event=log    duration=${ACCEPT_STREAM_QUIET}
    ...    rule=run-stream-resume
    Stream Log Lines Should Be    beta    gamma    name=run

A Message Stream Resumes From Last-Event-ID Without Gaps Or Repeats
    [Documentation]    A subscriber receives the bus's message and a live one; reconnecting with the last id it
    ...    saw, it receives exactly the messages posted while it was away (rules message-stream,
    ...    message-stream-resume).
    ${task} =    New Task Id    sseresume
    ${last} =    Receive A Stored And A Live Message    ${task}
    ${m3} =    Post Message    body=while away 1    task_id=${task}
    ${m4} =    Post Message    body=while away 2    task_id=${task}
    Open Message Stream    ${task}    last_event_id=${last}[msg_id]
    Wait Until Stream Has Events    2    event=message    name=bus    timeout=${ACCEPT_STREAM_TIMEOUT}
    Stream Should Stay Quiet    name=bus    event=message    duration=${ACCEPT_STREAM_QUIET}
    Stream Message Ids Should Be    ${m3}    ${m4}    name=bus
    Stream Events Should Have Shape    message    message event    name=bus

A New Message Subscriber Receives The Whole Bus
    [Documentation]    Without ``Last-Event-ID`` the message stream reads the bus from its start: a subscriber
    ...    of a ${ACCEPT_BUS_MESSAGES}-message bus receives all of them, in order (rule message-stream).
    [Setup]    Expect Reproduced Departure    message-stream
    ${task} =    New Task Id    hydrate
    @{posted} =    Post Numbered Messages    ${task}    ${ACCEPT_BUS_MESSAGES}
    Open Message Stream    ${task}
    Wait Until Stream Goes Quiet    event=message    name=bus    quiet=${ACCEPT_STREAM_QUIET}
    ...    timeout=${ACCEPT_STREAM_TIMEOUT}
    Stream Message Ids Should Be    @{posted}    name=bus    rule=message-stream

Streams Send Heartbeats At The Configured Interval
    [Documentation]    A quiet message stream receives ``heartbeat`` events with data ``{}`` at least every
    ...    ${SSE_HEARTBEAT_INTERVAL} (the SUT's ``api.sse.heartbeat_interval_s``) plus
    ...    ${SSE_HEARTBEAT_LATENESS} (rule heartbeat).
    ${task} =    New Task Id    heartbeat
    Post Message    body=one message so the bus exists    task_id=${task}
    Open Message Stream    ${task}
    Stream Heartbeats Should Arrive Every    ${SSE_HEARTBEAT_INTERVAL}    name=bus    heartbeats=2
    ...    tolerance=${SSE_HEARTBEAT_LATENESS}


*** Keywords ***
Receive A Stored And A Live Message
    [Documentation]    Post a message, open the bus's stream, post another; both arrive, in order. Closes the
    ...    stream and returns the second message.
    [Arguments]    ${task}
    ${stored} =    Post Message    body=before the stream    task_id=${task}
    Open Message Stream    ${task}
    Wait Until Stream Has Events    1    event=message    name=bus    timeout=${ACCEPT_STREAM_TIMEOUT}
    ${live} =    Post Message    body=while listening    task_id=${task}
    Wait Until Stream Has Events    2    event=message    name=bus    timeout=${ACCEPT_STREAM_TIMEOUT}
    Stream Message Ids Should Be    ${stored}    ${live}    name=bus    rule=message-stream
    Close Event Stream    bus
    RETURN    ${live}
