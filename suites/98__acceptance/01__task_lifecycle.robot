*** Settings ***
Documentation    Task lifecycle: a task is accepted, its run appears and ends as documented, its files
...              are served, and DELETE and stop end the work (``docs/api-behaviour.md``, "Task lifecycle").

Resource         ../../resources/acceptance.resource

Test Tags        api    agents


*** Test Cases ***
A New Task Is Accepted With Its Ids
    [Documentation]    POST /api/v1/tasks answers 201 with the project, the task, a well-formed run id and
    ...    ``started`` (rules task-create, run-id-format).
    ${task} =    New Task Id    accepted
    Run A Task To Its End    ${task}

A Run Appears And Completes
    [Documentation]    The run of a task is served as a run and ends ``completed`` when the agent exits 0; the
    ...    task lists it (rules run-lifecycle, run-response).
    ${task} =    New Task Id    completes
    ${run} =    Run A Task To Its End    ${task}    STUB_STDOUT_TEXT=one|two
    ${resp} =    Get Run    ${run}
    Answer Field Should Be    ${resp}    status    completed    rule=run-lifecycle
    Answer Field Should Be    ${resp}    task_id    ${task}    rule=run-response
    ${resp} =    Get Task    ${task}
    Answer Should Have Status    ${resp}    200    rule=task-list
    Get Json Of Answer    ${resp}    shape=task
    Answer Items Should Include Each Once    ${resp}    runs    run_id    ${run}    rule=run-list

A Completed Run Reports Exit Code 0
    [Documentation]    A completed run's JSON carries ``"exit_code": 0`` (rule exit-code-zero).
    [Setup]    Expect Reproduced Departure    exit-code-zero
    ${task} =    New Task Id    exitzero
    ${run} =    Run A Task To Its End    ${task}
    ${resp} =    Get Run    ${run}
    Answer Field Should Be    ${resp}    exit_code    0    rule=exit-code-zero

The Info Route Serves The Run Info Agreeing With The Run
    [Documentation]    GET /api/v1/runs/{id}/info answers run-info.yaml as ``application/x-yaml``, and it
    ...    agrees with GET /api/v1/runs/{id} read just before and after it (rules run-info-route,
    ...    run-info-agrees).
    ${task} =    New Task Id    info
    ${run} =    Run A Task To Its End    ${task}
    Wait Until Keyword Succeeds    ${ACCEPT_RUN_TIMEOUT}    ${ACCEPT_POLL_INTERVAL}
    ...    Info And Run Answers Should Agree    ${run}

Run, Task And Info Answers Agree With The Run Info On Disk
    [Documentation]    What GET /api/v1/runs/{id}, GET /api/v1/tasks/{id} and the info route serve is what
    ...    run-info.yaml under the runs root holds (rule run-info-agrees). Needs ``CONDUCTOR_ROOT``.
    ${task} =    New Task Id    ondisk
    ${run} =    Run A Task To Its End    ${task}
    Wait Until Keyword Succeeds    ${ACCEPT_RUN_TIMEOUT}    ${ACCEPT_POLL_INTERVAL}
    ...    Answers Should Agree With The Run Info On Disk    ${task}    ${run}

The Run Output Is Served
    [Documentation]    The run's output.md is served by the run-file route with its name, content and size
    ...    (rule run-file); with ``CONDUCTOR_ROOT`` also compared with the file on disk.
    ${task} =    New Task Id    output
    ${run} =    Run A Task To Its End    ${task}    STUB_OUTPUT=acceptance output of ${task}
    ${resp} =    Get Run File    ${task}    ${run}    output.md
    Answer Should Have Status    ${resp}    200    rule=run-file
    ${file} =    Get Json Of Answer    ${resp}    shape=run file
    Answer Field Should Be    ${resp}    name    output.md    rule=run-file
    Should Start With    ${file}[content]    acceptance output of ${task}    msg=output.md content (rule run-file)
    Run File Answer Should Be The File On Disk    ${resp}    ${PROJECT}    ${task}    ${run}

A Failing Agent Is Reported As Failed
    [Documentation]    An agent exiting 3 leaves its run ``failed`` with exit code 3 and an error summary
    ...    (rule run-failed).
    ${task} =    New Task Id    failing
    ${run} =    Run A Task To Its End    ${task}    STUB_EXIT_CODE=3    STUB_STDERR_TEXT=acceptance failure
    ${resp} =    Get Run    ${run}
    Answer Field Should Be    ${resp}    status    failed    rule=run-failed
    Answer Field Should Be    ${resp}    exit_code    3    rule=run-failed
    Answer Field Should Not Be    ${resp}    error_summary    ${EMPTY}    rule=run-failed

Stopping A Running Run Ends It As Failed
    [Documentation]    POST /api/v1/runs/{id}/stop on a running run answers 202 ``{"status":"stopping"}`` and
    ...    the run ends ``failed`` with a non-zero exit code and an error summary (rule run-stop).
    ${task} =    New Task Id    stopped
    ${run} =    Start A Long Running Task    ${task}
    ${resp} =    Stop Run    ${run}
    Answer Should Have Status    ${resp}    202    rule=run-stop
    Get Json Of Answer    ${resp}    shape=run stopping
    ${resp} =    Wait Until Run Has Finished    ${run}
    Answer Field Should Be    ${resp}    status    failed    rule=run-stop
    Answer Field Should Not Be    ${resp}    exit_code    0    rule=run-stop
    Answer Field Should Not Be    ${resp}    error_summary    ${EMPTY}    rule=run-stop
    [Teardown]    Delete Task Quietly    ${task}

Deleting A Task Stops Its Run And Its Loop
    [Documentation]    DELETE /api/v1/tasks/{id} on a task with a running run answers 202
    ...    ``{"stopped_runs": 1}``, the run ends, and the loop starts no further run (rule task-delete).
    ${task} =    New Task Id    deleted
    ${run} =    Start A Long Running Task    ${task}
    ${resp} =    Delete Task    ${task}
    Answer Should Have Status    ${resp}    202    rule=task-delete
    Get Json Of Answer    ${resp}    shape=task deleted
    Answer Field Should Be    ${resp}    stopped_runs    1    rule=task-delete
    Wait Until Run Has Finished    ${run}
    Task Should Start No Further Run    ${task}    ${PROJECT}    runs=1    duration=${ACCEPT_LOOP_WATCH}
    DONE Should Exist For Task    ${PROJECT}    ${task}

A Finished Task Reports Status Completed
    [Documentation]    A task whose agent finished its work (DONE) and which runs nothing reports ``completed``
    ...    (rule task-status).
    [Setup]    Expect Reproduced Departure    task-status
    ${task} =    New Task Id    finished
    Run A Task To Its End    ${task}
    ${resp} =    Get Task    ${task}
    Answer Field Should Be    ${resp}    status    completed    rule=task-status


*** Keywords ***
Info And Run Answers Should Agree
    [Documentation]    The run, its run-info.yaml from the info route, and the run again: the two run answers
    ...    are the same (else the run changed meanwhile and this fails, to be tried again) and the info
    ...    agrees with them.
    [Arguments]    ${run}
    ${before} =    Get Run    ${run}
    ${info} =    GET On Session    ${SESSION}    /api/v1/runs/${run}/info    expected_status=anything
    ${after} =    Get Run    ${run}
    Run Answers Should Be The Same    ${before}    ${after}
    Answer Should Have Status    ${info}    200    rule=run-info-route
    Answer Header Should Be    ${info}    Content-Type    application/x-yaml    rule=run-info-route
    Info Answer Should Agree With Run    ${info}    ${after}

Answers Should Agree With The Run Info On Disk
    [Documentation]    The run, the task's runs and the info route against run-info.yaml on disk, read once
    ...    more (the run again) to be sure nothing changed meanwhile.
    [Arguments]    ${task}    ${run}
    ${resp} =    Get Run    ${run}
    Run Answer Should Agree With Run Info On Disk    ${resp}
    ${task_resp} =    Get Task    ${task}
    Run Answer Should Agree With Run Info On Disk    ${task_resp}
    ${info} =    GET On Session    ${SESSION}    /api/v1/runs/${run}/info    expected_status=anything
    Info Answer Should Be The File On Disk    ${info}    ${PROJECT}    ${task}    ${run}
    ${again} =    Get Run    ${run}
    Run Answers Should Be The Same    ${resp}    ${again}
