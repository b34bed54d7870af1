"""Acceptance checks: does a conductor answer as conductor-loop's documentation says?

The behaviour checked is written down in ``docs/api-behaviour.md`` (our words, citing
conductor-loop's own pages). This package holds the logic behind the acceptance suites
(``suites/98__acceptance``), tested by pytest and free of Robot:

* :mod:`.evidence` -- one readable description of a request and its answer, and a requests
  transport adapter that turns time-outs, refused connections and cut-off answers into one
  assertion message with that evidence (instead of a traceback);
* :mod:`.behaviour` -- documented JSON shapes, run-info and bus-file comparisons, Prometheus text,
  CORS headers: each check returns what departs from the documentation, with the reference;
* :mod:`.streams` -- a Server-Sent Events stream recorded on a background thread, so a test can
  act while it listens (built on :mod:`conductor_perf.measure.sse`).
"""
