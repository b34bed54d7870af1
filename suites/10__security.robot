*** Settings ***
Documentation     Security: bad input gets a client error with conductor-loop's error shape and
...               changes nothing outside the runs root; the API key protects every route but the exempt ones.
...
...               Each bad input is one row below; what is sent is in the log and in the table of
...               ``conductor_perf/bench/security.py``. The expected answer is conductor-loop's (docs/conductor-loop.md,
...               "Errors" and "Identifiers"): a 4xx with ``{"error":{"code","message"}}``, 405 ``text/plain`` on
...               ``/healthz`` and ``/metrics``, a redirect to the cleaned path for ``..`` segments in the URL.
...               Auth runs against a second instance of the SUT started with ``--api-key`` when the suite
...               owns it (capability ``auth``); against an external SUT only when ``CONDUCTOR_API_KEY`` is set.

Resource          ../resources/common.resource
Library           ../libraries/SecurityLibrary.py

Suite Setup       Start Conductor For Suite
Suite Teardown    Finish Security Suite
Test Setup        Acquire Measurement Lock
Test Teardown     Release Measurement Lock
Test Template     Bad Input Should Be Rejected

Test Tags         security


*** Test Cases ***    CASE
Path Traversal In The Project Id Of A New Task    traversal-in-project-id-of-new-task
Path Traversal In The Task Id Of A New Task    traversal-in-task-id-of-new-task
An Absolute Path As Project Id    absolute-path-as-project-id
A Backslash In The Project Id    backslash-in-project-id
Dot Dot As Task Id    dot-dot-as-task-id
Characters The Runner Rejects In The Project Id    uppercase-and-underscore-in-project-id
A NUL Byte In The Task Id    nul-byte-in-task-id
A Task Id Longer Than A File Name    task-id-over-name-max
A Message Project Id Longer Than A File Name    project-id-over-name-max-of-message
Path Traversal In The Project Id Of A Message    traversal-in-project-id-of-message
Path Traversal In The Task Id Of A Message    traversal-in-task-id-of-message
Path Traversal In The Project Id Query Of Messages    traversal-in-project-id-query
Path Traversal In The Task Id Query Of The Message Stream    traversal-in-task-id-query-of-stream
Backslash Traversal In The Task Id Of The URL    backslash-traversal-in-task-id-path
Path Traversal In The Project Id Query Of A Task Lookup    traversal-in-project-id-query-of-task
Backslash Traversal In The Run Id Of The URL    backslash-traversal-in-run-id-path
Dot Dot Segments In The URL Path Of A Run    dot-dot-segments-in-run-path
An Unknown Field In A New Task    unknown-field-in-new-task
An Unknown Field In A Message    unknown-field-in-message
Truncated JSON For A New Task    invalid-json-new-task
A Form Body Instead Of JSON For A Message    not-json-message
An Empty Body For A Message    empty-body-message
Trailing Data After A Message    trailing-data-after-message
A JSON Array Instead Of A Task    array-instead-of-object
A Number As Prompt    number-as-prompt
A Message Body Over 1 MiB    message-body-over-1-mib
A Task Prompt Over 1 MiB    task-prompt-over-1-mib
A Task Without Project Id    task-without-project-id
A Task Without Task Id    task-without-task-id
A Task Without Agent Type    task-without-agent-type
A Task With A Blank Prompt    task-with-blank-prompt
A Task With An Invalid Attach Mode    task-with-invalid-attach-mode
A Message Without Project Id    message-without-project-id
A Message Without Body    message-without-body
Listing Messages Without Project Id    messages-query-without-project-id
Streaming Messages Without Project Id    message-stream-without-project-id
PUT On The Task List    put-tasks
DELETE On The Message List    delete-messages
POST On The Health Check    post-health
PUT On The Version    put-version
POST On The Status    post-status
PATCH On The Run List    patch-runs
GET On The Stop Action Of A Run    get-run-stop
POST On The All Runs Stream    post-all-runs-stream
DELETE On Healthz    delete-healthz
POST On Metrics    post-metrics
A Project Id Query Longer Than A File Name    project-id-over-name-max
A 6000 Character After Cursor    long-after-cursor
A 6000 Character Project Id In A Task Lookup    long-project-id-of-task-lookup
A 64 KiB Query Value    query-over-64-kib
Protected Routes Answer 401 With The Exact Shape Without A Valid Key
    [Documentation]    No key, a wrong Bearer key, a wrong ``X-API-Key`` and the key in the ``Basic`` scheme:
    ...    401, ``{"error":"unauthorized","message":"valid API key required"}``, ``WWW-Authenticate``.
    [Template]    NONE
    Start Conductor With Api Key
    Protected Routes Should Answer 401 Without A Valid Key
Protected Routes Accept The Key As A Bearer Token And As X-API-Key
    [Documentation]    The right key in either header lets every protected route through.
    [Template]    NONE
    Start Conductor With Api Key
    Protected Routes Should Accept The Key    bearer
    Protected Routes Should Accept The Key    x-api-key
Exempt Routes Stay Open Without A Key
    [Documentation]    ``/api/v1/health``, ``/api/v1/version``, ``/metrics`` and ``/healthz`` need no key.
    [Template]    NONE
    Start Conductor With Api Key
    Exempt Routes Should Stay Open Without A Key


*** Keywords ***
Bad Input Should Be Rejected
    [Documentation]    Send one bad input: the contract's answer, a healthy server, nothing outside the root.
    [Arguments]    ${case}
    Send Bad Input    ${case}
    Answer Should Match The Contract
    Conductor Should Be Healthy
    Nothing Should Have Been Created Outside The Root

Finish Security Suite
    [Documentation]    Record how many bad inputs were tried and stop the conductor with an API key.
    Get Bad Inputs Tried
    Stop Conductor With Api Key
