"""What the pipeline tells an operator while it runs: Prometheus metrics from the shared per-stage rows
(docs/metrics.md)."""
