"""`harpagon bench live`: the live serving system on EMULATED workers, measured end to end.

An emulated worker "runs" a batch by sleeping its profiled latency (`EmulatedExecutor`), so every figure
here measures the frontend, the controller, the dispatch and the RPCs of this runtime on this machine,
never a GPU. The serving process (`LocalCluster`: frontend and controller, each on an event loop of its own) is this
process; every worker is its own process, and the LOAD GENERATOR is another process (a Python gRPC
sender, or NVIDIA's C++ perf_analyzer), so that the client does not steal the frontend's event loop.

What is measured (see docs/benchmarks/live.md):

1. Per config (default configs/demo.yaml and configs/multi.yaml), per dispatch policy (batch-aware and
   request-level), with constant and with Poisson arrivals at the planned rates (`send_times` of the
   demo, seeded): each app's attainment (answered within the SLO; dropped and failed frames are late)
   against the plan's promise (`promise.target` / `promise.predicted`), the cost of the plan, the
   serving process's CPU per frame, and how far behind schedule the sender fell (client-bound?).
2. Per module: measured P50/P99/max latency against the plan's `predicted_latency_ms`.
3. Per module, the time of each hop split into frontend queue, batch collection, serialisation +
   transport, worker queue and execution (`FrontendDataPlane.stats()`, where the runtime has it).
4. The capacity of one frontend process: the highest frame rate through a one-module app at which the
   promise is still kept, found by doubling then bisection over short bounded runs; then the same search
   once per frame kind (`--frames`: 640x480 and 1280x720, raw UINT8 and JPEG, against 8x8 raw, all
   sent by the Python sender, the app declaring its frames so that the plan and the emulated workers
   charge their decode): each kind's capacity and server CPU per frame as ratios to the 8x8 figures.
5. perf_analyzer figures on the demo's traffic app: sync, streaming, a concurrency range.

The pure parts (attainment from per-frame records, the capacity search, the tables, the report) take
plain data and are unit-tested with fakes; the rest drives processes.

Its modules: `run` (the whole bench and the files it writes), `cluster` (a config's cluster and its
runs), `capacity` (the capacity search), `configs` (what is served), `load` (the Python sender),
`perf_analyzer` (NVIDIA's sender and probe), `measure` (records -> figures), `results` (the figures as
plain data), `markdown` (the report), `plots` (its PNGs). `harpagon bench live` is defined with the
other bench commands in `harpagon.cli.bench`.
"""
