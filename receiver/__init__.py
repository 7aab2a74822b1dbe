"""ProdSentinel receiver: OTLP/gRPC in, PostgreSQL out."""

__version__ = "0.1.0"
