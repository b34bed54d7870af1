*** Settings ***
Documentation     conductor-loop performance targets, one readable test per target.
...
...               The top-level suite owns the system under test: the embedded reference conductor on a
...               free 127.0.0.1 port by default, the conductor-loop executable named by ``CONDUCTOR_BINARY``
...               (started and owned the same way), or the server named by ``CONDUCTOR_URL``. At the end it
...               writes metrics.json and the seed's FACT lines (MESSAGE-BUS.md) for a plain robot run.

Resource          ../resources/common.resource
Library           ../libraries/ReportLibrary.py

Suite Setup       Start Suite Run
Suite Teardown    Finish Suite Run


*** Keywords ***
Start Suite Run
    [Documentation]    Start (or attach to) the SUT and link the run summary from the log.
    Start Conductor For Suite
    Link Run Summary

Finish Suite Run
    [Documentation]    Stop the SUT, write the run report and remove the scratch data (the runner does both
    ...    itself when it runs the suites).
    Stop Conductor For Suite
    Write Run Report
    Remove Scratch Data    keep=${KEEP_DATA}
