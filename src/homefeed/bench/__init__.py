"""homefeed's benchmark toolkit: load described by parameters, performance by percentiles.

* ``graph`` -- follow graphs: synthetic power-law ones (``power_law_graph``) and real ones
  from SNAP edge lists (``load_edge_list``). Needs numpy (the ``bench`` extra).
* ``hdr`` -- latency recording per request type in HDR histograms that merge across
  processes. Needs hdrhistogram (the ``bench`` extra).
* ``loadgen`` -- the open-loop, coordinated-omission-corrected HTTP load generator; run it in
  its own process(es), never inside the server: ``python -m homefeed.bench.loadgen``.
* ``stubserver`` -- a loopback HTTP stub with a set delay and stall, to test and calibrate the
  generator without homefeed.

Submodules are not imported here, so that a generator process does not pay for numpy.
"""
