"""Swarms: one measurement whose load comes from N worker processes (pabot processes, here or on
other machines) that meet at a start barrier on a shared board and hand in exactly mergeable reports.

* :mod:`.board`: the shared store (a PabotLib server, or memory);
* :mod:`.protocol`: roster, claims, spec, barrier, heartbeats, reports, the coordinator's collection;
* :mod:`.scenarios`: what one worker's share of each scenario is, and the coordinator's checks;
* :mod:`.runner`: ``python -m conductor_perf.swarm`` (``make swarm``): SUT, PabotLib server,
  coordinator and pabot workers, and ``join`` for workers on another host.
"""
