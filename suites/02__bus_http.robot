*** Settings ***
Documentation    Message bus over HTTP: the bus target (> 1000 msg/s with 10 writers) through
...              ``POST /api/v1/messages``, the way agents and the web UI post, and nothing lost.

Resource         ../resources/common.resource
Library          ../libraries/ApiLoadLibrary.py

Suite Setup      Start Conductor For Suite
Test Setup       Acquire Measurement Lock
Test Teardown    Release Measurement Lock

Test Tags        bus    api    perf


*** Test Cases ***
Posting Messages Over HTTP Sustains Over ${BUS_MIN_MSG_PER_S} Messages Per Second With ${BUS_WRITERS} Writers
    [Documentation]    The bus target through the REST API: ${BUS_WRITERS} writers post for ${BUS_DURATION}; every
    ...    acknowledged message must then be in the task bus exactly once.
    Measure Message Posting    writers=${BUS_WRITERS}    duration=${BUS_DURATION}
    Get Request Rate    >    ${BUS_MIN_MSG_PER_S}
    Get Error Percentage    <    ${API_MAX_ERROR_PCT}
    Posted Messages Should All Be In The Bus
