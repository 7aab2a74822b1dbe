"""The analyzer's storage: every SQL statement it runs lives in this package, nothing else."""
