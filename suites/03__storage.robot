*** Settings ***
Documentation    Run storage targets (> ${RUN_CREATION_MIN_PER_S} runs/s, < ${RUN_CREATION_MAX_MS} ms per run creation;
...              see docs/targets.md for where each target comes from).
...
...              File level: runs are created on the SUT's disk the way conductor-loop does it (the run
...              directory plus an fsynced, atomically renamed ``run-info.yaml``) by this suite's own
...              writer, beside the SUT's runs root (never in it, unless ``CONDUCTOR_STORAGE_IN_ROOT`` is
...              set), next to ``${RUN_HISTORY}`` completed runs. Through the server: task submissions to
...              an instance started with ``--disable-task-start`` (its own root, the same history), each
...              timed until the server has created its run directory; that instance writes no
...              ``run-info.yaml`` (the real server writes it when it launches the agent).

Resource         ../resources/common.resource
Library          ../libraries/StorageLibrary.py

Suite Setup      Prepare Storage Suite
Test Setup       Acquire Measurement Lock
Test Teardown    Release Measurement Lock

Test Tags        storage    perf


*** Test Cases ***
File-Level Run Creation Exceeds ${RUN_CREATION_MIN_PER_S} Runs Per Second
    [Documentation]    conductor-loop's ``TestRunCreationThroughput``: one writer (this suite's) creates runs
    ...    for distinct tasks for ${RUN_CREATION_DURATION} on the SUT's disk.
    Record File System State
    Measure Run Creation Rate    duration=${RUN_CREATION_DURATION}
    Get Run Creation Rate    >    ${RUN_CREATION_MIN_PER_S}

File-Level Run Creation Takes Under ${RUN_CREATION_MAX_MS} Ms Per Run
    [Documentation]    Run creation < ${RUN_CREATION_MAX_MS} ms, per run at p95, one run at a time, this suite's
    ...    writer on the SUT's disk.
    Measure Run Creation Rate    duration=${RUN_CREATION_DURATION}
    Get Run Creation Latency    p95    <    ${RUN_CREATION_MAX_MS}

Run Creation Through The Server Exceeds ${RUN_CREATION_MIN_PER_S} Runs Per Second
    [Documentation]    The server's own run creation: one client submits tasks one after another for
    ...    ${RUN_CREATION_DURATION} to an instance with task launch disabled and ${RUN_HISTORY} runs of history;
    ...    each run counts once its directory exists.
    Measure Run Creation Through The Server    duration=${RUN_CREATION_DURATION}    history=${RUN_HISTORY}
    Get Run Creation Rate    >    ${RUN_CREATION_MIN_PER_S}

Run Creation Through The Server Takes Under ${RUN_CREATION_MAX_MS} Ms Per Run
    [Documentation]    Run creation < ${RUN_CREATION_MAX_MS} ms, per submission at p95 from the send until the
    ...    server has created the run's directory.
    Measure Run Creation Through The Server    duration=${RUN_CREATION_DURATION}    history=${RUN_HISTORY}
    Get Run Creation Latency    p95    <    ${RUN_CREATION_MAX_MS}

File-Level Run Creation Burst Of ${RUN_CREATION_BURST} Takes Under ${RUN_CREATION_MAX_MS} Ms Per Run
    [Documentation]    ${RUN_CREATION_BURST} runs created at once by as many threads. On 2 cores a burst queues, so
    ...    the per-run figure is the burst's wall time / ${RUN_CREATION_BURST}; the per-run latency percentiles are
    ...    logged.
    Measure Run Creation Burst    runs=${RUN_CREATION_BURST}
    Get Run Creation Latency    p95
    Get Run Creation Time Per Run    <    ${RUN_CREATION_MAX_MS}

Run Info Reads And Atomic Writes Take Under ${RUN_INFO_MAX_MS} Ms
    [Documentation]    Run-info read time and atomic (fsync + rename) write performance.
    Measure Run Info Costs
    Get Run Info Latency    read    p95    <    ${RUN_INFO_MAX_MS}
    Get Run Info Latency    write    p95    <    ${RUN_INFO_MAX_MS}

Concurrent Run Info Readers Never See A Torn File
    [Documentation]    Concurrent reads and writes: readers never see a partial run-info.yaml.
    Measure Concurrent Run Info Access
    ...    readers=${RUN_INFO_RW_READERS}    writers=${RUN_INFO_RW_WRITERS}    duration=${RUN_INFO_RW_DURATION}
    Get Torn Run Info Reads    ==    ${TORN_READS_MAX}


*** Keywords ***
Prepare Storage Suite
    [Documentation]    Attach to the SUT and put a history of completed runs where the file-level benchmarks write.
    Start Conductor For Suite
    Acquire Measurement Lock
    Seed Run History    runs=${RUN_HISTORY}
    [Teardown]    Release Measurement Lock
