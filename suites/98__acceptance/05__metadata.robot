*** Settings ***
Documentation    Metadata routes: health, version, Prometheus metrics whose counters move by the expected
...              amount after known actions, CORS preflight, request ids and the error envelope
...              (``docs/api-behaviour.md``, "Metadata").

Resource         ../../resources/acceptance.resource

Test Tags        api


*** Test Cases ***
Health Routes Answer Ok
    [Documentation]    GET /healthz and GET /api/v1/health answer 200 with status ok (rules healthz, health).
    ${resp} =    GET On Session    ${SESSION}    /healthz    expected_status=anything
    Answer Should Have Status    ${resp}    200    rule=healthz
    Get Json Of Answer    ${resp}    shape=healthz
    ${resp} =    GET On Session    ${SESSION}    /api/v1/health    expected_status=anything
    Answer Should Have Status    ${resp}    200    rule=health
    Get Json Of Answer    ${resp}    shape=health

The Version Route Names The Build
    [Documentation]    GET /api/v1/version answers a non-empty version (rule version).
    ${resp} =    GET On Session    ${SESSION}    /api/v1/version    expected_status=anything
    Answer Should Have Status    ${resp}    200    rule=version
    Get Json Of Answer    ${resp}    shape=version
    Answer Field Should Not Be    ${resp}    version    ${EMPTY}    rule=version

Metrics Expose The Documented Families
    [Documentation]    GET /metrics answers ``text/plain; version=0.0.4`` with each documented family, its HELP,
    ...    its TYPE and a sample (rule metrics).
    ${scrape} =    Scrape Metrics
    Metrics Should Have The Documented Families    ${scrape}

The Request Counter Moves By The Requests Answered
    [Documentation]    Three POST /api/v1/messages answered 201 move
    ...    ``conductor_api_requests_total{method="POST",status="201"}`` by exactly 3 (rule metrics-requests).
    ${task} =    New Task Id    counted
    ${before} =    Scrape Metrics
    Post Three Messages    ${task}
    ${after} =    Scrape Metrics
    Metric Should Have Moved By    ${before}    ${after}    conductor_api_requests_total{method="POST",status="201"}
    ...    3    rule=metrics-requests

The Bus Append Counter Moves With Each Posted Message
    [Documentation]    Three posted messages move ``conductor_messagebus_appends_total`` by at least 3 (other
    ...    appends of the server may add to it) (rule metrics-bus-appends).
    ${task} =    New Task Id    appends
    ${before} =    Scrape Metrics
    Post Three Messages    ${task}
    ${after} =    Scrape Metrics
    Metric Should Have Moved By    ${before}    ${after}    conductor_messagebus_appends_total    3
    ...    rule=metrics-bus-appends    at_least=${True}

The Completed Run Counter Moves With A Completed Run
    [Documentation]    A task whose agent exits 0 moves ``conductor_completed_runs_total`` by 1 and
    ...    ``conductor_failed_runs_total`` by 0 (rule metrics-runs).
    ${task} =    New Task Id    countok
    ${before} =    Scrape Metrics
    Run A Task To Its End    ${task}
    ${after} =    Scrape Metrics Once The Task Loop Is Counted    ${before}
    Metric Should Have Moved By    ${before}    ${after}    conductor_completed_runs_total    1    rule=metrics-runs
    Metric Should Have Moved By    ${before}    ${after}    conductor_failed_runs_total    0    rule=metrics-runs

The Failed Run Counter Moves With A Failed Run
    [Documentation]    A task whose only agent run exits 3 moves ``conductor_failed_runs_total`` by 1 and
    ...    ``conductor_completed_runs_total`` by 0 (rule metrics-runs).
    [Setup]    Expect Reproduced Departure    metrics-runs
    ${task} =    New Task Id    countfail
    ${before} =    Scrape Metrics
    Run A Task To Its End    ${task}    STUB_EXIT_CODE=3
    ${after} =    Scrape Metrics Once The Task Loop Is Counted    ${before}
    Metric Should Have Moved By    ${before}    ${after}    conductor_failed_runs_total    1    rule=metrics-runs
    Metric Should Have Moved By    ${before}    ${after}    conductor_completed_runs_total    0    rule=metrics-runs

A CORS Preflight From An Allowed Origin Is Answered
    [Documentation]    OPTIONS with the SUT's allowed ``Origin`` answers 204 with that origin, the documented
    ...    methods and headers (rule cors). Skipped when ``CONDUCTOR_CORS_ORIGIN`` is empty.
    Skip If    not $CONDUCTOR_CORS_ORIGIN    the SUT's allowed CORS origin is not known (set CONDUCTOR_CORS_ORIGIN)
    ${resp} =    Send Preflight    ${CONDUCTOR_CORS_ORIGIN}
    Preflight Answer Should Allow Origin    ${resp}    ${CONDUCTOR_CORS_ORIGIN}

A CORS Preflight From Another Origin Gets No CORS Headers
    [Documentation]    OPTIONS from an origin not on the allow-list answers 204 without
    ...    ``Access-Control-Allow-Origin`` (rule cors).
    ${resp} =    Send Preflight    ${OTHER_ORIGIN}
    Preflight Answer Should Not Allow Origin    ${resp}    ${OTHER_ORIGIN}

Every Answer Carries A Request Id
    [Documentation]    An ``X-Request-ID`` sent comes back; without one the answer carries a generated
    ...    ``req-<unix ns>-<hex>`` (rule request-id).
    VAR    &{headers} =    X-Request-ID=acceptance-request-42
    ${resp} =    GET On Session    ${SESSION}    /api/v1/health    headers=${headers}    expected_status=anything
    Answer Should Carry Request Id    ${resp}    acceptance-request-42
    ${resp} =    GET On Session    ${SESSION}    /api/v1/health    expected_status=anything
    Answer Should Carry Request Id    ${resp}

API Errors Use The Error Envelope
    [Documentation]    GET of an unknown run answers 404 ``{"error":{"code":"NOT_FOUND","message":...}}``
    ...    (rule error-envelope).
    ${resp} =    Get Run    20200101-0000000000-1-1
    Answer Should Have Status    ${resp}    404    rule=error-envelope
    ${body} =    Get Json Of Answer    ${resp}    shape=error
    Json Should Have Shape    ${body}[error]    error detail
    Answer Field Should Be    ${resp}    error.code    NOT_FOUND    rule=error-envelope


*** Keywords ***
Post Three Messages
    [Documentation]    Three messages to the task's bus.
    [Arguments]    ${task}
    Post Message    body=counted 1    task_id=${task}
    Post Message    body=counted 2    task_id=${task}
    Post Message    body=counted 3    task_id=${task}

Scrape Metrics Once The Task Loop Is Counted
    [Documentation]    Scrape until the completed and failed run counters together moved by 1 since ``before``
    ...    (a task loop ends shortly after its run); returns that scrape.
    [Arguments]    ${before}
    ${after} =    Wait Until Keyword Succeeds    ${ACCEPT_RUN_TIMEOUT}    ${ACCEPT_POLL_INTERVAL}
    ...    Run Counters Should Have Moved Since    ${before}
    RETURN    ${after}

Run Counters Should Have Moved Since
    [Documentation]    Scrape; the completed and failed run counters together moved by 1 since ``before``.
    [Arguments]    ${before}
    ${after} =    Scrape Metrics
    Metric Should Have Moved By    ${before}    ${after}
    ...    conductor_completed_runs_total + conductor_failed_runs_total    1    rule=metrics-runs
    RETURN    ${after}

Send Preflight
    [Documentation]    OPTIONS /api/v1/tasks as a browser preflight from ``origin`` for a POST with a JSON body.
    [Arguments]    ${origin}
    VAR    &{headers} =    Origin=${origin}    Access-Control-Request-Method=POST
    ...    Access-Control-Request-Headers=Content-Type
    ${resp} =    OPTIONS On Session    ${SESSION}    /api/v1/tasks    headers=${headers}    expected_status=anything
    RETURN    ${resp}
