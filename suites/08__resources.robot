*** Settings ***
Documentation    Resource targets: < ${MEMORY_MAX_MB} MB for ${AGENTS} concurrent agents, < ${CPU_MAX_PCT} % CPU
...              under load, < ${THREADS_MAX} goroutines (see docs/targets.md). The SUT's process tree is sampled every
...              ``${SAMPLE_INTERVAL}`` while each test runs its own workload. No leaks over repeated identical
...              workloads (a longer soak is tagged ``soak``), no CPU for an idle log stream, and the CPU hot
...              spots of the conductor (tagged ``profile``).

Resource         ../resources/common.resource
Library          ../libraries/ResourceLibrary.py
Library          ../libraries/AgentLibrary.py
Library          ../libraries/ApiLoadLibrary.py

Suite Setup      Start Conductor For Suite
Test Setup       Acquire Measurement Lock
Test Teardown    Release Measurement Lock

Test Tags        resources    perf


*** Test Cases ***
Memory Stays Under ${MEMORY_MAX_MB} MB With ${AGENTS} Concurrent Agents
    [Documentation]    Server plus agent processes, peak during ${AGENTS} concurrent agents.
    Start Resource Sampling    ${AGENTS} agents    interval=${SAMPLE_INTERVAL}
    Run Concurrent Agents    ${AGENTS}    work_ms=${AGENT_WORK_MS}    timeout=${AGENTS_TIMEOUT}
    Stop Resource Sampling
    Every Agent Run Should Have Completed
    Get Peak Memory    <    ${MEMORY_MAX_MB}

Server CPU Stays Under ${CPU_MAX_PCT} Percent At The Target Request Rate
    [Documentation]    CPU < ${CPU_MAX_PCT} % under load, the load being the API target rate
    ...    (${API_MIN_REQ_PER_S} req/s of GET /api/v1/tasks, open loop).
    Start Resource Sampling    API load    interval=${SAMPLE_INTERVAL}
    Measure Latency At Rate    GET    /api/v1/tasks    rate=${API_MIN_REQ_PER_S}    duration=${API_DURATION}
    Stop Resource Sampling
    Get Server Cpu    peak
    Get Server Cpu    mean    <    ${CPU_MAX_PCT}

Server Threads Stay Under ${THREADS_MAX} With ${AGENTS} Agents
    [Documentation]    < ${THREADS_MAX} goroutines; OS threads of the server process are the figure every SUT
    ...    exposes.
    Start Resource Sampling    ${AGENTS} agents    interval=${SAMPLE_INTERVAL}
    Run Concurrent Agents    ${AGENTS}    work_ms=${AGENT_WORK_MS}    timeout=${AGENTS_TIMEOUT}
    Stop Resource Sampling
    Get Peak Threads    <    ${THREADS_MAX}

Goroutines Or Tasks Stay Under ${THREADS_MAX} At The Peak Of A Load
    [Documentation]    < ${THREADS_MAX} goroutines under normal load, counted when ${GOROUTINE_AGENTS} agents
    ...    run, ${GOROUTINE_SSE_CLIENTS} clients follow a run's log and ${GOROUTINE_CONNECTIONS} connections load
    ...    the API at once. A conductor-loop build started by the suite: its goroutine stack dump on SIGQUIT
    ...    (it exits and is restarted); the embedded conductor: its asyncio tasks.
    Count Goroutines At The Peak Of A Load
    ...    agents=${GOROUTINE_AGENTS}
    ...    sse_clients=${GOROUTINE_SSE_CLIENTS}
    ...    connections=${GOROUTINE_CONNECTIONS}
    ...    dump_after=${GOROUTINE_COUNT_AFTER}
    Get Goroutines Or Tasks    <    ${THREADS_MAX}
    [Teardown]    Restart A Conductor That Exited

Server Memory And Threads Do Not Leak Over Repeated Workloads
    [Documentation]    No memory or goroutine leaks. A warm-up cycle, then ${LEAK_CYCLES}
    ...    identical cycles (agents, a bus burst over HTTP, SSE clients that connect, read and disconnect),
    ...    each followed by ${LEAK_IDLE_WINDOW} idle; memory, threads, open fds and TCP sockets at the idle
    ...    points (and a Go build's goroutines, with its busy threads in place of all threads) must show
    ...    no significant upward trend and return to the warm-up baseline.
    Run Leak Cycles With The Standard Workload    ${LEAK_CYCLES}
    Server Resources Should Not Leak

Server Memory And Threads Do Not Leak Over A Soak
    [Documentation]    The leak test repeated for ${LEAK_SOAK_DURATION} (soak profile: run with
    ...    ``--include soak``; excluded by default).
    [Tags]    soak
    Run Leak Cycles With The Standard Workload    ${LEAK_CYCLES}    duration=${LEAK_SOAK_DURATION}
    Server Resources Should Not Leak

An Open Log Stream On A Quiet Run Costs Almost No CPU
    [Documentation]    One SSE client follows a running run that writes nothing for ${IDLE_WINDOW}; the server's
    ...    CPU must stay near zero (conductor-loop 0.76 spins a core here: docs/conductor-loop.md, "Idle CPU").
    [Tags]    sse
    Measure Idle Stream Cpu    ${IDLE_WINDOW}    interval=${SAMPLE_INTERVAL}
    Get Idle Server Cpu    <    ${IDLE_CPU_MAX_PCT}

CPU Hot Spots Of The Conductor Are Identified
    [Documentation]    CPU hot spots identified and documented, under ${PROFILE_LOAD_DURATION} of API, agent and
    ...    SSE load, into hotspots.md in the results folder. The embedded conductor: a separate one under
    ...    scalene (its JSON beside it); a conductor-loop build started by the suite: its own process
    ...    sampled by Linux perf (perf data and reports beside it). Skipped, with the reason, when the SUT
    ...    offers no profiler or the machine has no usable perf.
    [Tags]    profile
    Profile Cpu Hot Spots
    ...    ${PROFILE_LOAD_DURATION}
    ...    agents=${PROFILE_AGENTS}
    ...    top=${PROFILE_TOP}
    ...    hz=${PROFILE_PERF_HZ}
    Hot Spot Profile Should Have Been Written
    Get Conductor Hot Spots    >=    ${PROFILE_MIN_HOTSPOTS}


*** Keywords ***
Restart A Conductor That Exited
    [Documentation]    Release the lock, and start a fresh conductor on the same runs root if this one exited
    ...    (a Go SUT does after its goroutine dump).
    Release Measurement Lock
    Restart Conductor    if_down=${True}

Run Leak Cycles With The Standard Workload
    [Documentation]    `Run Leak Cycles` with the workload and tolerances of the targets resource.
    [Arguments]    ${cycles}    ${duration}=${None}
    Run Leak Cycles    ${cycles}
    ...    agents=${LEAK_AGENTS}
    ...    agent_work_ms=${LEAK_AGENT_WORK_MS}
    ...    messages=${LEAK_MESSAGES}
    ...    sse_clients=${LEAK_SSE_CLIENTS}
    ...    idle=${LEAK_IDLE_WINDOW}
    ...    duration=${duration}
    ...    memory_tolerance_mb=${LEAK_MEMORY_TOLERANCE_MB}
    ...    memory_per_run_kb=${LEAK_MEMORY_PER_RUN_KB}
    ...    threads_tolerance=${LEAK_THREADS_TOLERANCE}
    ...    goroutines_tolerance=${LEAK_GOROUTINE_TOLERANCE}
    ...    fds_tolerance=${LEAK_FDS_TOLERANCE}
    ...    tcp_tolerance=${LEAK_TCP_TOLERANCE}
    ...    timeout=${LEAK_CYCLE_TIMEOUT}
