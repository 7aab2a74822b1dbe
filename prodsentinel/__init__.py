"""Generated code of ProdSentinel's APIs (scripts/generate_protos.py)."""
