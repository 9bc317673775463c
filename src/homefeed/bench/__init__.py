"""homefeed's benchmark toolkit: load described by parameters, performance by percentiles.

* ``graph`` -- follow graphs: synthetic power-law ones (``power_law_graph``) and real ones
  from SNAP edge lists (``load_edge_list``). Needs numpy (the ``bench`` extra).
* ``hdr`` -- latency recording per request type in HDR histograms that merge across
  processes. Needs hdrhistogram (the ``bench`` extra).
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
* ``charts`` -- PNG charts (matplotlib). ``cli`` -- ``homefeed bench``.

Submodules are not imported here, so that a generator process does not pay for numpy.
"""
