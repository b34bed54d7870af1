*** Settings ***
Documentation    Regression gate: this run's figures against a baseline run (docs/targets.md, "Regression gate").
...
...              Runs last. Every figure with repeated samples (per-second rates) is compared with the
...              same figure of ``${BASELINE}`` (default: the newest run in results/history.jsonl of the
...              same profile and the same SUT, i.e. kind, version and binary hash, that measured any of
...              these figures, passed or not, since a real build misses some targets in every run; the
...              message says which) by a Mann-Whitney
...              rank test plus a minimum effect of ``${REGRESSION_MIN_EFFECT}``, which sits above the A/A
...              noise floor measured on this machine. The test message names the baseline; the test is
...              skipped, saying what it looked for, when there is none yet. Under pabot it sees only
...              the figures written before it started; compare a finished run with
...              ``python -m conductor_perf.report_cli compare results/latest``.

Resource         ../resources/common.resource
Library          ../libraries/ReportLibrary.py

Test Tags        regression


*** Variables ***
${BASELINE}    latest-measured


*** Test Cases ***
Figures Do Not Regress From The Baseline Run
    [Documentation]    Fails only on a change that is both significant and larger than the noise.
    Run Should Not Regress From Baseline    ${BASELINE}    min_effect=${REGRESSION_MIN_EFFECT}
