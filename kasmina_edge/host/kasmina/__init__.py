"""Kasmina: the seed layer, its lifecycle engine and gates, isolation, grafting and parameter registry."""

from kasmina_edge.host.kasmina.gates import (
    GradientHealthInputs,
    InterfaceInputs,
    ResetInputs,
    SanityInputs,
    StabilityInputs,
    SystemImpactInputs,
    evaluate_gate,
    g0_sanity,
    g1_gradient_health,
    g2_stability,
    g3_interface,
    g4_system_impact,
    g5_reset_sanity,
)
from kasmina_edge.host.kasmina.grafting import (
    CURVES,
    GRAFTING_STRATEGIES,
    DriftControlled,
    FixedRamp,
    GradNormGated,
    GraftingError,
    GraftingStrategy,
    GraftSignals,
    PerformanceLinked,
    make_grafting,
)
from kasmina_edge.host.kasmina.isolation import IsolationMonitor, bit_equal
from kasmina_edge.host.kasmina.layer import (
    GerminationRejected,
    KasminaLayer,
    SeedError,
    SeedInfo,
    host_parameters,
)
from kasmina_edge.host.kasmina.lifecycle_engine import NEXT_STAGE, LifecycleEngine
from kasmina_edge.host.kasmina.registry import ParameterRegistry, SharedParameterError, UpdateRejected
from kasmina_edge.host.kasmina.telemetry import TELEMETRY_KEYS

__all__ = [
    "CURVES",
    "GRAFTING_STRATEGIES",
    "NEXT_STAGE",
    "TELEMETRY_KEYS",
    "DriftControlled",
    "FixedRamp",
    "GerminationRejected",
    "GradNormGated",
    "GradientHealthInputs",
    "GraftSignals",
    "GraftingError",
    "GraftingStrategy",
    "InterfaceInputs",
    "IsolationMonitor",
    "KasminaLayer",
    "LifecycleEngine",
    "ParameterRegistry",
    "PerformanceLinked",
    "ResetInputs",
    "SanityInputs",
    "SeedError",
    "SeedInfo",
    "SharedParameterError",
    "StabilityInputs",
    "SystemImpactInputs",
    "UpdateRejected",
    "bit_equal",
    "evaluate_gate",
    "g0_sanity",
    "g1_gradient_health",
    "g2_stability",
    "g3_interface",
    "g4_system_impact",
    "g5_reset_sanity",
    "host_parameters",
    "make_grafting",
]
