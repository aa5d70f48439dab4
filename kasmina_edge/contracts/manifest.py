"""The bundle manifest: what a `.kedge` bundle holds, as one versioned pydantic model.

The build writes it, the device reads it (without torch). Fields that only the model
family understands (a model's config, a site's quantization grid) stay open dictionaries;
everything the device acts on is typed.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kasmina_edge.contracts.errors import KasminaError

SCHEMA = "kasmina-bundle/1"
TARGETS = ("edgetpu", "cortex-m", "linux-arm", "x86")


class ManifestError(KasminaError):
    """A manifest that does not match the schema."""


class _Model(BaseModel):
    # Unknown keys are kept, not refused: a newer builder may add informational fields.
    model_config = ConfigDict(extra="allow")


class ModelInfo(_Model):
    config: dict[str, Any] | None = None
    experiment_id: str | None = None
    checkpoint_sha256: str = Field(description="SHA-256 of the base checkpoint this bundle was built from")


class SiteInfo(_Model):
    index: int = Field(ge=0)
    name: str
    channels: int = Field(gt=0)
    length: int = Field(gt=0)
    grid: dict[str, Any] = Field(default_factory=dict, description="int8 quantization grid at the cut")


class ChainInfo(_Model):
    segments: list[str] = Field(description="base segment artifact names, in execution order")
    default_active: dict[str, str] = Field(
        default_factory=dict, description="site index -> seed kernel artifact live at boot"
    )


class ArtifactEntry(_Model):
    name: str
    kind: Literal["segment", "kernel", "whole", "policy", "c_array", "report"]
    format: str = Field(description="tflite-int8 | onnx-qdq | onnx-qcdq | c-source | json")
    file: str = Field(description="path inside the bundle")
    sha256: str
    bytes: int = Field(ge=0)
    bits: int = 8
    packed: bool = Field(False, description="4-bit weights packed two per byte; unpack on load")
    unpacked_sha256: str | None = None
    unpacked_bytes: int | None = None
    site: int | None = None
    seed: str | None = None
    blueprint: str | None = None
    inputs: list[str] = Field(default_factory=list)
    reference: str | None = Field(None, description="npz of reference input/output vectors")


class Provenance(_Model):
    kasmina_edge: str
    git_commit: str | None = None
    built_at: str
    python: str | None = None
    host: str | None = None


class BundleManifest(_Model):
    schema_: str = Field(SCHEMA, alias="schema")
    kind: Literal["full", "kernels"] = Field(
        "full", description="full image, or seed kernels only for an existing base (checkpoint_sha256)"
    )
    version: int = Field(1, ge=1, description="monotonic version counter; devices refuse downgrades")
    target: Literal["edgetpu", "cortex-m", "linux-arm", "x86"]
    profile: str
    format: str
    bits: int = 8
    classes: list[str] = Field(default_factory=lambda: ["N", "S", "V", "F", "Q"])
    model: ModelInfo
    sites: list[SiteInfo] = Field(default_factory=list)
    chain: ChainInfo | None = None
    artifacts: list[ArtifactEntry]
    provenance: Provenance
    pending: list[str] = Field(default_factory=list, description="build steps not run here, e.g. edgetpu_compiler")

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def artifact(self, name: str) -> ArtifactEntry:
        for a in self.artifacts:
            if a.name == name:
                return a
        raise ManifestError(f"manifest: no artifact named {name!r}")

    def kernels(self) -> list[ArtifactEntry]:
        return [a for a in self.artifacts if a.kind == "kernel"]

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys): the bytes that are signed."""
        return json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True, indent=1).encode()


def parse_manifest(data: bytes | str | dict[str, Any], source: str = "manifest.json") -> BundleManifest:
    """Validate a manifest; a problem is one line naming the field."""
    try:
        raw = json.loads(data) if isinstance(data, bytes | str) else data
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{source}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{source}: expected a JSON object")
    schema = raw.get("schema")
    if schema != SCHEMA:
        raise ManifestError(f"{source}: schema {schema!r} is not supported (this runtime reads {SCHEMA!r})")
    try:
        return BundleManifest.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ManifestError(f"{source}: field {where!r}: {err['msg']}") from None


def json_schema() -> dict[str, Any]:
    return BundleManifest.model_json_schema(by_alias=True)
