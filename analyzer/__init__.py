"""ProdSentinel analyzer: incident grouping and triage (built on the receiver's tables)."""
