*** Settings ***
Documentation    The verdict of an A/B comparison: B against A, figure by figure.
...
...              ``python -m conductor_perf.compare`` (``make compare``) runs the chosen suites on SUT A and
...              SUT B alternately in ABBA order, each run on a fresh SUT, writes ``compare.json`` and then
...              runs this suite on it; the merged log shows every round as a suite before this one.
...              A figure is slower in B only when its whole 95 % interval of the ratio B/A lies on the bad
...              side of 1.0 (README, "Comparing two builds").

Library          ../libraries/CompareLibrary.py

Suite Setup      Load Comparison    ${COMPARE_DIR}

Test Tags        compare


*** Variables ***
${COMPARE_DIR}    %{CONDUCTOR_PERF_COMPARE=results/latest-compare}


*** Test Cases ***
Every Round Completed On A Fresh SUT
    [Documentation]    A round whose SUT did not start or died, or that did not finish, is left out of every
    ...    figure and named here, never averaged in.
    Every Round Should Have Completed

B Is Not Slower Than A In Any Figure
    [Documentation]    Rates and latencies (and other figures with a better direction): the ratio B/A with its
    ...    95 % interval; the test fails for a figure whose interval lies wholly on the bad side of 1.0.
    No Figure Should Be Slower In B

B Meets Every Exact Target In Every Round
    [Documentation]    Counts that must be zero (lost, duplicated, torn) and exact counts are checked in every
    ...    round of B, never as a ratio.
    Exact Targets Should Hold In B
