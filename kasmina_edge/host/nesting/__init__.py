"""Nested seeds: children as lifecycle participants, a hierarchical controller, shared resource arbitration."""
