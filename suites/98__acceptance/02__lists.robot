*** Settings ***
Documentation    Lists: /api/v1/tasks, /api/v1/runs, /api/v1/status and /api/v1/messages list every item
...              once, with stable shapes; the message cursor ``after`` pages through a bus in append order
...              (``docs/api-behaviour.md``, "Lists"). The v1 lists document no limit or offset: each answer
...              is the whole list, so "every item once" is checked on it.

Resource         ../../resources/acceptance.resource

Test Tags        api


*** Test Cases ***
The Task List Holds Every Task Once With A Stable Shape
    [Documentation]    GET /api/v1/tasks lists each of three new tasks once; every item has the documented
    ...    shape (rule task-list).
    ${made} =    Run Three Tasks In A New Project
    ${resp} =    GET On Session    ${SESSION}    /api/v1/tasks    expected_status=anything
    Answer Should Have Status    ${resp}    200    rule=task-list
    Get Json Of Answer    ${resp}    shape=task list
    Answer Items Should Have Shape    ${resp}    tasks    task summary
    Answer Items Should Include Each Once    ${resp}    tasks    task_id    @{made}[tasks]    rule=task-list

The Task List Filters By Project
    [Documentation]    GET /api/v1/tasks?project_id=P lists the tasks of P, each once, and no task of another
    ...    project (one exists) (rule task-list-filter).
    [Setup]    Expect Reproduced Departure    task-list-filter
    ${other} =    New Task Id    other-project
    Run A Task To Its End    ${other}
    ${made} =    Run Three Tasks In A New Project
    VAR    &{query} =    project_id=${made}[project]
    ${resp} =    GET On Session    ${SESSION}    /api/v1/tasks    params=${query}    expected_status=anything
    Answer Should Have Status    ${resp}    200    rule=task-list-filter
    Answer Items Should Include Each Once    ${resp}    tasks    task_id    @{made}[tasks]
    ...    rule=task-list-filter
    Answer Items Should All Have    ${resp}    tasks    project_id    ${made}[project]    rule=task-list-filter

The Run List Holds Every Run Once With A Stable Shape
    [Documentation]    GET /api/v1/runs lists each of three new runs once, every item a RunResponse (rule run-list).
    ${made} =    Run Three Tasks In A New Project
    ${resp} =    GET On Session    ${SESSION}    /api/v1/runs    expected_status=anything
    Answer Should Have Status    ${resp}    200    rule=run-list
    Get Json Of Answer    ${resp}    shape=run list
    Answer Items Should Have Shape    ${resp}    runs    run
    Answer Items Should Include Each Once    ${resp}    runs    run_id    @{made}[runs]    rule=run-list

The Status Lists Each Running Run Once
    [Documentation]    While a run is running, GET /api/v1/status lists it once in ``running_tasks`` and
    ...    ``active_runs_count`` counts the items; once it ended it is no longer listed (rule status).
    ${task} =    New Task Id    status
    ${run} =    Start A Long Running Task    ${task}
    ${resp} =    GET On Session    ${SESSION}    /api/v1/status    expected_status=anything
    Answer Should Have Status    ${resp}    200    rule=status
    Get Json Of Answer    ${resp}    shape=status
    Answer Items Should Have Shape    ${resp}    running_tasks    running task
    Answer Items Should Include Each Once    ${resp}    running_tasks    run_id    ${run}    rule=status
    Answer Count Should Match Items    ${resp}    active_runs_count    running_tasks    rule=status
    End The Task    ${task}    ${run}
    Status Should Not List The Run    ${run}
    [Teardown]    Delete Task Quietly    ${task}

Messages After A Cursor Are Exactly Those Posted After It
    [Documentation]    For each of seven posted messages, GET /api/v1/messages?after=<its id> answers exactly the
    ...    messages posted after it, in append order: a reader paging with ``after`` sees every message once
    ...    (rule messages-after).
    ${task} =    New Task Id    cursor
    @{posted} =    Post Numbered Messages    ${task}    7
    Messages After Each Should Be The Rest    @{posted}

An Unknown After Cursor Is Answered 404
    [Documentation]    ``after`` naming no message of the bus is 404 with the error envelope (rules
    ...    messages-after, error-envelope).
    ${task} =    New Task Id    unknownafter
    Post Message    body=only message    task_id=${task}
    ${resp} =    List Messages    task_id=${task}    after=MSG-20200101-000000-000000000-PID00000-0000
    Answer Should Have Status    ${resp}    404    rule=messages-after
    Get Json Of Answer    ${resp}    shape=error
    Answer Field Should Be    ${resp}    error.code    NOT_FOUND    rule=error-envelope


*** Keywords ***
Run Three Tasks In A New Project
    [Documentation]    Three tasks of a new project, each run to its end; returns a dictionary of the
    ...    ``project``, the ``tasks`` and the ``runs``.
    ${project} =    New Project Id    lists
    ${first}    ${run_a} =    Run A New Task Of Project    ${project}    list-a
    ${second}    ${run_b} =    Run A New Task Of Project    ${project}    list-b
    ${third}    ${run_c} =    Run A New Task Of Project    ${project}    list-c
    VAR    @{tasks} =    ${first}    ${second}    ${third}
    VAR    @{runs} =    ${run_a}    ${run_b}    ${run_c}
    VAR    &{made} =    project=${project}    tasks=${tasks}    runs=${runs}
    RETURN    ${made}

Run A New Task Of Project
    [Documentation]    A new task of ``project`` run to its end; returns its id and its run's id.
    [Arguments]    ${project}    ${slug}
    ${task} =    New Task Id    ${slug}
    ${run} =    Run A Task To Its End    ${task}    ${project}
    RETURN    ${task}    ${run}

End The Task
    [Documentation]    DELETE the task and wait until its run has finished.
    [Arguments]    ${task}    ${run}
    Delete Task    ${task}
    Wait Until Run Has Finished    ${run}

Status Should Not List The Run
    [Documentation]    GET /api/v1/status no longer lists the run in ``running_tasks``.
    [Arguments]    ${run}
    ${resp} =    GET On Session    ${SESSION}    /api/v1/status    expected_status=anything
    Answer Should Have Status    ${resp}    200    rule=status
    Answer Items Should Not Include    ${resp}    running_tasks    run_id    ${run}    rule=status
