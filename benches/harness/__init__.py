"""meshaudit's side-by-side throughput benchmark (`make bench`; benches/harness/README.md),
importable as `meshbench` once `make venv` has installed it: `bench` (the run), `arms` (what each
arm runs), `tools` (load generator, pinning, /proc), `code_profile` (perf), `report` (outputs)."""
