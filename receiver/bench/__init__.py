"""`prodsentinel bench`: end-to-end OTLP ingestion throughput, and the raw COPY ceiling beside it.

One run, one tenant of its own (rows are append-only and never deleted):

1. end to end: concurrent Exports of pre-serialized requests (the exact bytes an OTLP
   exporter sends) to a receiver, each acknowledged only once its rows are committed;
2. ceiling: rows of the same kind of requests, mapped once outside the timing, COPYed
   straight into `spans` the way the writer does (same codecs, same batch size, as many
   connections), with no gRPC and no mapping; end to end / ceiling is the receiver's
   efficiency.

requests.py   realistic pre-serialized OTLP requests (RequestPool)
load.py       the end-to-end load: concurrent exporters (drive)
ceiling.py    the COPY ceiling (map_requests, copy_ceiling)
probes.py     CPU, WAL, commit and machine readings
measure.py    one run, both phases, as a report (BenchConfig, measure)
child.py      receivers and PostgreSQL started for the run
command.py    the command: options, run, the report as a table
"""

from receiver.bench.command import add_arguments, run

__all__ = ["add_arguments", "run"]
