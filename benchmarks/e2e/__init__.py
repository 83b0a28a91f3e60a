"""The end-to-end benchmark's parts (benchmarks/bench_e2e.py): the fleet and its payloads,
raw-socket MQTT publishers, the pipelines under test, process and store figures, the report."""
