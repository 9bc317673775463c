"""homefeed's benchmark toolkit: load described by parameters, performance by percentiles.

* ``graph`` -- follow graphs: synthetic power-law ones (``power_law_graph``) and real ones
  from SNAP edge lists (``load_edge_list``). Needs numpy (a base dependency).
* ``hdr`` -- latency recording per request type in HDR histograms that merge across
  processes. Needs hdrhistogram (a base dependency, so that ``homefeed bench --quick`` works
  after a plain install).
* ``loadgen`` -- the open-loop, coordinated-omission-corrected HTTP load generator; run it in
  its own process(es), never inside the server: ``python -m homefeed.bench.loadgen``.
* ``stubserver`` -- a loopback HTTP stub with a set delay and stall, to test and calibrate the
  generator without homefeed.
* ``world`` -- making a world (graph + users + seeded posts) through ``RecordStore.bulk_load``;
  ``homefeed demo`` uses it too.
* ``server`` -- starting/stopping ``homefeed serve`` on 127.0.0.1, and a small body-reading client.
* ``runner`` -- workload runs, the capacity search, the pull/push/hybrid comparison.
* ``fanout_delay`` -- fan-out delay probed from outside, by the author's follower count.
* ``micro`` -- building blocks beside their engines' ceilings (SQLite, Redis, PostgreSQL).
* ``charts`` -- PNG charts (matplotlib: the ``bench`` extra, needed only for ``--charts``). ``cli`` -- ``homefeed bench``.

Submodules are not imported here, so that a generator process does not pay for numpy.
"""
