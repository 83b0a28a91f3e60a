"""The time-series store: line protocol (`lineprotocol`) and the writer (`writer`), imported
from their modules: the writer brings influxdb-client, a quarter of a second at start-up that
the pipeline alone does not need."""
