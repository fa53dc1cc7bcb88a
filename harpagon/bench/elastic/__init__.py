"""`harpagon bench elastic`: does cost follow load? A compressed diurnal day (each app's rate from a
quarter of its configured rate up to it and back, Poisson) through `harpagon serve` with a
`serve.fleet` and its local scaler, on EMULATED workers (batches sleep their profiled latency; no GPU
is used). It reports the GPU-hours the started workers cost against the plans' own and against a fleet
fixed at the peak, attainment per minute against the promise, every frame's fate, and each scale
event with its delay (docs/benchmarks/elastic.md).

The cluster first serves the night's rate for a warm-up (the fleet settles at its night size, as a
system running for days would be at dawn); the day is measured after it.
"""

from harpagon.bench.elastic.report import write_report
from harpagon.bench.elastic.results import DEFAULT_CONFIG, ElasticResult, summary
from harpagon.bench.elastic.run import run_elastic

__all__ = ["DEFAULT_CONFIG", "ElasticResult", "run_elastic", "summary", "write_report"]
