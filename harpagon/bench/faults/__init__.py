"""`harpagon bench faults`: the live system under crashes, stalls, a partition, overload and hostile
calls, each process a host of its own.

A cluster of separate processes, 1 controller, 1 frontend and N emulated workers (batches sleep their
profiled latency: no GPU), under mutual TLS with certificates made as `harpagon certs` makes them.
Where this process may (root, `ip netns`), each component runs in its own network namespace, joined by
veth pairs to a bridge in a namespace of its own (10.x addresses, nothing changed in the host's
namespace), so that a partition is a pair of blackhole routes; otherwise everything listens on
127.0.0.1 and the partition scenario is skipped (the report says which mode ran).

A load process streams each app's frames at its planned rate, evenly spaced, for the whole suite
(a second one adds 9x that rate during the overload), and records each frame when it sends it, then its
outcome (OK or the status code) and its client-measured latency. Its timeout is the SLO + VANISH_AFTER_S: a
frame without any answer by then VANISHED, and so does a frame sent with no outcome ever recorded (the
client gave up on it, or died); an OK answer later than the SLO + CLIENT_HOP_MS is a LATE success.
The client's stderr goes to a file in the suite's temporary folder (in error messages and `--logs`).

Scenarios, in order (each: steady load, the fault, observation, heal or restart, then a bounded wait until
the cluster is back: every worker registered, a plan in force since the last join or leave, and the
latest frames answered OK): baseline; worker kill -9 (then a replacement); worker SIGSTOP; SIGTERM
to a busy worker, and to half the workers at once as a scale-down picks them (each must leave
gracefully: the controller re-plans without it and empties it, it exits 0, no frame is lost; then they
start again); frontend kill -9 (then a restart); frontend SIGSTOP; controller kill -9 (then a restart; its planner process
must die with it); controller SIGSTOP; partition between the controller and one worker; hostile
control-plane calls (and an allowed control call to each server they go to, which must succeed);
health-port abuse (Watch streams and idle connections held open while probes Check); a flood of big
messages (60 MB, 4096x4096 frames) from another client; a routed worker whose device answers INTERNAL
(test-only injection, HARPAGON_EMULATED_FAULT_FILE); kill -9 of a `harpagon serve` beside the cluster
(its processes must die with it, its CA key must not be left); a lull (1/20 of the rate, then back:
the plan follows it down and must grow back); overload (10x the planned rate; last, because the
frontend's rate reports may move the plan to the overload rate for a while).

Per scenario the report gives frames sent / OK / failed with a status (per code) / vanished / late, the
disruption (from the fault to the send time of the last frame that was not answered OK within its SLO),
the re-plan (from the fault to the next `plan N in force` line of the controller), the workers the
controller evicted (`removed` lines), and a verdict against the goals (`goals.py: GOALS`).

The pure parts (records -> figures, goals, the report) take plain data; the rest drives processes.
Run `python -m harpagon.bench.faults --help`; the same entry starts the load generator, the route probe
and the hostile caller (`python -m harpagon.bench.faults _client|_routes|_hostile ...`).

Its modules: `cli` (the command line, and the entry of the helper processes), `run` (one run, start to
report), `cluster` (the processes under test and the load clients), `scenarios` (each scenario and the
fault it injects), `network` (namespaces or loopback; the partition), `processes` (starting, killing and
watching processes), `logs` (the log lines read), `load` (the load client), `callers` (the probe, the
hostile, flood and health-port callers), `frames` (records -> counts), `figures` (each scenario's
figures after the run), `goals` (the goals and a result scored against them), `markdown` (the report).
"""
