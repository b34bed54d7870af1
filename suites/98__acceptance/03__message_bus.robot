*** Settings ***
Documentation    Message bus: posted messages are acknowledged with well-formed ids, listed back with their
...              ids, types and bodies in append order, and written to the bus file in the bus format
...              (``docs/api-behaviour.md``, "Message bus").

Resource         ../../resources/acceptance.resource

Test Tags        bus    api


*** Test Cases ***
Posted Messages Are Listed With Their Ids And Types In Order
    [Documentation]    Three messages posted to a task bus (one without a type) are listed with the ids, types,
    ...    project, task and timestamps of their 201s, in posting order; no type means USER (rules
    ...    message-post, message-list).
    ${task} =    New Task Id    bus
    @{posted} =    Post Three Messages    ${task}
    ${resp} =    List Messages    task_id=${task}
    Answer Should Have Status    ${resp}    200    rule=message-list
    Listed Messages Should Match Posted    ${resp}    @{posted}

Message Bodies Read Back Unchanged
    [Documentation]    The bodies listed are the bodies posted, byte for byte (rule message-body).
    [Setup]    Expect Reproduced Departure    message-body
    ${task} =    New Task Id    bodies
    @{posted} =    Post Three Messages    ${task}
    ${resp} =    List Messages    task_id=${task}
    Listed Messages Should Match Posted    ${resp}    @{posted}    compare=msg_id,body    rule=message-body

A Message Without A Task Goes To The Project Bus
    [Documentation]    A message posted without ``task_id`` is listed on the project bus of its project, not on
    ...    a task bus of it (rule message-post).
    ${task} =    New Task Id    scoped
    ${project_message} =    Post Message    body=for the whole project    type=FACT
    ${resp} =    List Messages
    Answer Items Should Include Each Once    ${resp}    messages    msg_id    ${project_message}[msg_id]
    ...    rule=message-post
    Post Message    body=for one task    task_id=${task}
    ${resp} =    List Messages    task_id=${task}
    Answer Items Should Not Include    ${resp}    messages    msg_id    ${project_message}[msg_id]    rule=message-post

The Bus File Holds The Posted Messages In The Bus Format
    [Documentation]    TASK-MESSAGE-BUS.md under the runs root holds each posted message once, in order, as
    ...    ``---``, its header, ``---``, its body -- parsed and compared with ``conductor_perf.formats.bus``
    ...    (rule bus-file). Needs ``CONDUCTOR_ROOT``.
    ${task} =    New Task Id    busfile
    @{posted} =    Post Three Messages    ${task}
    Bus File Should Hold Posted Messages    ${PROJECT}    ${task}    @{posted}


*** Keywords ***
Post Three Messages
    [Documentation]    A FACT, a PROGRESS with a two-line body, and one without a type, to the task's bus.
    [Arguments]    ${task}
    ${fact} =    Post Message    body=first message of ${task}    type=FACT    task_id=${task}
    ${progress} =    Post Message    body=second message\nwith two lines    type=PROGRESS    task_id=${task}
    ${plain} =    Post Message    body=third message, no type    task_id=${task}
    RETURN    ${fact}    ${progress}    ${plain}
