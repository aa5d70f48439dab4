"""Blueprint library: function-preserving seed modules on (B, C, L) activations, and their registry.

Importing this package registers every blueprint (the modules below do it with
``@register_blueprint``).
"""

from kasmina_edge.host.blueprints import adapters, attention, conv, gating, nested, quant, sparse  # noqa: F401
from kasmina_edge.host.blueprints.registry import (
    CORTEX_M_OPS,
    EDGETPU_OPS,
    TARGET_OPS,
    TARGETS,
    BlueprintParamError,
    BlueprintSpec,
    UnknownBlueprintError,
    blueprint_by_id,
    create_blueprint,
    get_blueprint,
    is_registered,
    list_blueprints,
    register_blueprint,
)

__all__ = [
    "CORTEX_M_OPS",
    "EDGETPU_OPS",
    "TARGETS",
    "TARGET_OPS",
    "BlueprintParamError",
    "BlueprintSpec",
    "UnknownBlueprintError",
    "blueprint_by_id",
    "create_blueprint",
    "get_blueprint",
    "is_registered",
    "list_blueprints",
    "register_blueprint",
]
