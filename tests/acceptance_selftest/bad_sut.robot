*** Settings ***
Documentation       Self-test of the acceptance keywords against a misbehaving conductor (tests/badsut.py):
...                 every test here must FAIL with the evidence, within its time limit, never with a
...                 traceback. Run by tests/test_acceptance_selftest.py with CONDUCTOR_URL set to that server.

Resource            ../../resources/acceptance.resource

Suite Setup         Open Acceptance Session
Suite Teardown      Close Acceptance Session
Test Teardown       Close All Event Streams


*** Test Cases ***
A Server Error Fails With The Answer
    ${resp} =    Get Run    err500
    Answer Should Have Status    ${resp}    200    rule=run-lifecycle

HTML Instead Of JSON Fails With The Answer
    ${resp} =    Get Run    html
    Get Json Of Answer    ${resp}    shape=run

A Hanging Server Fails Within The Timeout
    Get Run    hang

An Answer Cut Off Fails With What Arrived
    Get Run    cut

A Dripping Answer Fails At The Deadline
    Get Run    drip

A Closed Connection Fails With The Request
    Get Run    closed

Polling A Hanging Server Fails Within The Wait
    Wait Until Run Has Finished    hang

A Truncated Stream Fails With The Events Received
    Open Run Stream    truncated
    Wait Until Stream Has Event    status    name=run    status=completed    timeout=${ACCEPT_STREAM_TIMEOUT}

A Silent Stream Fails Within Its Timeout
    Open Run Stream    silent
    Wait Until Stream Has Events    1    name=run    timeout=${ACCEPT_STREAM_TIMEOUT}

A Stream Answering HTML Fails With The Content Type
    Open Run Stream    html

A Stream Without An Answer Head Fails Within Its Timeout
    Open Run Stream    hang

A Refused Stream Fails With The Answer
    Open Run Stream    err500

A Wrong Shape Fails With The Departure
    ${resp} =    Get Run    ok
    Get Json Of Answer    ${resp}    shape=task
