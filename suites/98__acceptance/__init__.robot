*** Settings ***
Documentation     Acceptance: the SUT's API behaves as conductor-loop documents it.
...
...               Each test states one documented behaviour of ``docs/api-behaviour.md`` (our words, citing
...               conductor-loop's own pages) and checks it through the API with RequestsLibrary, so the
...               log shows every request and answer; a failure names the rule, what the docs say and the
...               evidence. These suites run last, after every measurement (they leave tasks in the SUT, and
...               the API suite measures its lists with an exact history), and take no measurement lock
...               (under pabot the runner starts them once the perf suites are done).
...
...               The SUT: the conductor at ``CONDUCTOR_URL`` (or a managed build) as it is; in place of
...               the embedded reference conductor, a second embedded one with a fresh runs root and
...               ``resources/conductor.yaml``, the settings the README gives a real conductor-loop.
...               Checks of files under the runs root are skipped without ``CONDUCTOR_ROOT``.

Resource          ../../resources/acceptance.resource

Suite Setup       Open Acceptance Session
Suite Teardown    Close Acceptance Session

Test Tags         acceptance
