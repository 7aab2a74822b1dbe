"""Tiered triage: a deterministic root-cause analysis for every incident (tier 1)."""
