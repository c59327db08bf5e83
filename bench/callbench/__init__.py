"""The callback benchmark's parts (bench/callbacks.py is the command that runs them).

- `procs.py`: processes: /proc readers (RSS, CPU), waiting for a quiet machine, a server
  whose output goes through a pipe to a separate reader (the drain), stopping process
  groups, the noisy neighbour, reading the GC probe's files (bench/probe/).
- `servers.py`: the server variants (paymentapp at INFO and at WARNING, the floor, the
  Node peer) and how each is set up on a fresh database.
- `sandbox.py`: paymentapp's setup in sandbox mode: a strict fake Daraja, and the orders
  and STK pushes made through the app's HTTP API.
- `tables.py`: medians, the pass rule, and the printed tables.
"""
