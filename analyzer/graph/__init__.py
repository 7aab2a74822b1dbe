"""The service catalog and dependency graph, discovered from the stored spans.

config.py     GraphConfig: windows, staleness, limits (built from Settings, never the env)
model.py      enums, records, the latency histogram (shared by SQL, API and terminal)
edges.py      the SQL aggregation: spans of a window -> calls -> edges (+ hourly stats)
services.py   the catalog: discovery from resources and call endpoints; metadata updates
staleness.py  edges going stale and coming back; expiry of hourly stats
cycles.py     Tarjan + Johnson (pure), canonical cycle paths, the alert sync
traversal.py  upstream/downstream/both walks as one recursive CTE
upkeep.py     run_graph_upkeep: aggregation + staleness + cycles in one transaction
store.py      reads: graph of a time range, edges among services, cycles; for incidents:
              service_criticality, criticalities, blast_radius
messages.py   records <-> graph.proto, request validation (pure)
service.py    the ServiceGraphService gRPC servicer; add_graph_service
render.py     a traversal as a tree, a graph as Graphviz DOT (pure)
terminal.py   `prodsentinel graph | graph-cycles | graph-set`
bench.py      the traversal benchmark (5,000 services, 20,000 edges)
"""
