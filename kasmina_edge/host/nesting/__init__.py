"""Nested seeds: children as lifecycle participants, a hierarchical controller, shared resource arbitration.

- :mod:`.arbitration`: the one budget (parameters, MACs, memory bytes), shares per level, the ranking rule;
- :mod:`.hierarchy`: a nested seed's children with their own seed ids and lifecycles in the layer's engine;
- :mod:`.walk`: training and gate measurements of roots (through the SeedDriver) and children;
- :mod:`.controller`: parent level (Tamiyo's where rule) and child level (gain-ranked rounds, ablation culls).
"""

from kasmina_edge.host.nesting.arbitration import RULE, Arbiter, ArbitrationError, Request, Resources, Verdict
from kasmina_edge.host.nesting.hierarchy import ChildSeed, NestedHierarchy, NestingError, release_on_cull

__all__ = [
    "RULE",
    "Arbiter",
    "ArbitrationError",
    "ChildSeed",
    "NestedHierarchy",
    "NestingError",
    "Request",
    "Resources",
    "Verdict",
    "release_on_cull",
]
