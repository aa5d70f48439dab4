"""The bundle manifest: what a `.kedge` bundle holds, as one versioned pydantic model.

The build writes it, the device reads it (without torch). Fields that only the model
family understands (a model's config, a site's quantization grid) stay open dictionaries;
everything the device acts on is typed. ``SCHEMA`` names the schema version: a reader
refuses a manifest of another version rather than guess. The JSON Schema is exported to
``manifest.schema.json`` beside this module by ``tools/export_schema.py`` (a test keeps it current).
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from kasmina_edge.contracts.errors import KasminaError

SCHEMA_VERSION = 1
SCHEMA = f"kasmina-bundle/{SCHEMA_VERSION}"
TARGETS = ("edgetpu", "cortex-m", "linux-arm", "x86")
RESERVED_NAMES = frozenset({"manifest.json", "signature.json"})

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="lower-case hex SHA-256")]


def _plain_relative_path(value: str) -> str:
    """A file's path inside the zip: relative, POSIX, no '..', not one of the bundle's own names."""
    path = PurePosixPath(value)
    if not value or value.startswith("/") or "\\" in value or ".." in path.parts or str(path) != value:
        raise ValueError(f"{value!r} is not a plain relative path inside the bundle")
    if value in RESERVED_NAMES:
        raise ValueError(f"{value!r} is reserved for the bundle itself")
    return value


BundlePath = Annotated[str, AfterValidator(_plain_relative_path)]
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+@-]{0,127}")


def _plain_name(value: str) -> str:
    """A name that may become a file name on the device: letters, digits, '.', '_', '-', '+', '@'; no path."""
    if not _PLAIN.fullmatch(value) or ".." in value:
        raise ValueError(
            f"{value[:80]!r} is not a plain name (letters, digits, '.', '_', '-', '+', '@'; "
            "starts with a letter or digit; no '/', '\\' or '..'; at most 128 characters)"
        )
    return value


def _plain_name_path(value: str) -> str:
    """An artifact name: plain names, optionally in plain sub-folders ('edgetpu/model.cc')."""
    if not value or len(value) > 255 or any(not _PLAIN.fullmatch(p) or ".." in p for p in value.split("/")):
        raise ValueError(f"{value[:80]!r} is not a plain name (plain names joined by '/', no '..' or absolute path)")
    return value


PlainName = Annotated[str, AfterValidator(_plain_name)]
ArtifactName = Annotated[str, AfterValidator(_plain_name_path)]
StageName = Literal[
    "DORMANT",
    "GERMINATED",
    "TRAINING",
    "BLENDING",
    "SHADOWING",
    "PROBATIONARY",
    "FOSSILIZED",
    "CULLED",
    "EMBARGOED",
    "RESETTING",
    "TERMINATED",
]
GateName = Literal["G0", "G1", "G2", "G3", "G4", "G5"]


class ManifestError(KasminaError):
    """A manifest that does not match the schema."""


class _Model(BaseModel):
    # Unknown keys are kept, not refused: a newer builder may add informational fields.
    model_config = ConfigDict(extra="allow")


class ModelInfo(_Model):
    config: dict[str, Any] | None = None
    experiment_id: str | None = None
    checkpoint_sha256: Sha256 = Field(description="SHA-256 of the base checkpoint this bundle was built from")


class ActivationStats(_Model):
    """A site's activation over the build's calibration windows: the device's drift reference."""

    mean: list[float] = Field(description="per channel")
    std: list[Annotated[float, Field(ge=0)]] = Field(description="per channel")
    windows: int = Field(ge=1, description="calibration windows the statistics were taken over")

    @model_validator(mode="after")
    def _same_length(self) -> ActivationStats:
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} channels, std {len(self.std)}")
        return self


class SiteInfo(_Model):
    index: int = Field(ge=0)
    name: str
    channels: int = Field(gt=0)
    length: int = Field(gt=0)
    grid: dict[str, Any] = Field(default_factory=dict, description="int8 quantization grid at the cut")
    activation_stats: ActivationStats | None = Field(
        None, description="build-time activation statistics at the site, for drift on the device"
    )

    @model_validator(mode="after")
    def _stats_match_channels(self) -> SiteInfo:
        if self.activation_stats is not None and len(self.activation_stats.mean) != self.channels:
            raise ValueError(
                f"site {self.index}: activation_stats has {len(self.activation_stats.mean)} channels, "
                f"the site {self.channels}"
            )
        return self


class ChainInfo(_Model):
    segments: list[ArtifactName] = Field(description="base segment artifact names, in execution order")
    default_active: dict[str, ArtifactName] = Field(
        default_factory=dict, description="site index -> seed kernel artifact live at boot"
    )


class TensorSpec(_Model):
    """One input or output tensor of an artifact, with its quantization."""

    name: str
    shape: list[Annotated[int, Field(ge=1)]]
    dtype: Literal["int8", "uint8", "int16", "int32", "float16", "float32"]
    scale: list[float] | None = Field(None, description="quantization scale: one, or one per channel")
    zero_point: list[int] | None = None

    @model_validator(mode="after")
    def _quantization_consistent(self) -> TensorSpec:
        if (self.scale is None) != (self.zero_point is None):
            raise ValueError(f"tensor {self.name!r}: scale and zero_point go together")
        if self.scale is not None and self.zero_point is not None and len(self.scale) != len(self.zero_point):
            raise ValueError(f"tensor {self.name!r}: scale and zero_point differ in length")
        if self.dtype.startswith("float") and self.scale is not None:
            raise ValueError(f"tensor {self.name!r}: a float tensor has no quantization")
        return self


class GateVerdict(_Model):
    gate: GateName
    passed: bool
    reason: str
    metrics: dict[str, float] = Field(default_factory=dict)


class LifecycleStep(_Model):
    """One move of the seed on the host."""

    src: StageName
    dst: StageName
    reason: str
    gate: GateVerdict | None = None


class SeedKernelInfo(_Model):
    """What the device needs to know of a seed kernel trained on the host."""

    blueprint: str
    condition_tags: list[str] = Field(default_factory=list)
    param_count: int = Field(ge=0)
    bits: Literal[4, 8, 16, 32]
    lifecycle: list[LifecycleStep] = Field(default_factory=list, description="the seed's moves on the host")
    g1_verdict: GateVerdict | None = Field(
        None, description="host G1 (gradient health): the device passes TRAINING on it"
    )
    measured_gain: float | None = Field(None, description="G4 gain over the pre-germination baseline")

    @model_validator(mode="after")
    def _g1_is_g1(self) -> SeedKernelInfo:
        if self.g1_verdict is not None and self.g1_verdict.gate != "G1":
            raise ValueError(f"g1_verdict holds gate {self.g1_verdict.gate}")
        return self


class ArtifactEntry(_Model):
    name: ArtifactName = Field(description="plain name (may become a file name on the device)")
    kind: Literal["segment", "kernel", "whole", "policy", "c_array", "report"]
    format: str = Field(description="tflite-int8 | onnx-qdq | onnx-qcdq | c-source | json")
    file: BundlePath = Field(description="path inside the bundle")
    sha256: Sha256
    bytes: int = Field(ge=0)
    bits: int = 8
    packed: bool = Field(False, description="4-bit weights packed two per byte; unpack on load")
    unpacked_sha256: Sha256 | None = None
    unpacked_bytes: int | None = None
    site: int | None = None
    seed: str | None = None
    blueprint: str | None = None
    inputs: list[str] = Field(default_factory=list)
    input_specs: list[TensorSpec] = Field(default_factory=list, description="shape, dtype, quantization")
    output_specs: list[TensorSpec] = Field(default_factory=list)
    seed_kernel: SeedKernelInfo | None = Field(None, description="for seed kernels: how the host grew it")
    reference: BundlePath | None = Field(None, description="npz of reference input/output vectors")


class Provenance(_Model):
    kasmina_edge: str
    git_commit: str | None = None
    built_at: str
    python: str | None = None
    host: str | None = None
    tool_versions: dict[str, str] = Field(default_factory=dict, description="package -> version")
    command_line: list[str] = Field(default_factory=list)


class FileEntry(_Model):
    sha256: Sha256
    bytes: int = Field(ge=0)


class BundleManifest(_Model):
    schema_: str = Field(SCHEMA, alias="schema")
    bundle_id: PlainName | None = Field(
        None, description="set by the writer from the manifest's content; a plain name (the device files it)"
    )
    kind: Literal["full", "kernels"] = Field(
        "full", description="full image, or seed kernels only for an existing base (checkpoint_sha256)"
    )
    version: int = Field(1, ge=1, description="monotonic version counter; devices refuse downgrades")
    target: Literal["edgetpu", "cortex-m", "linux-arm", "x86"]
    profile: PlainName = Field(description="hardware profile name (profiles/hardware/NAME.toml)")
    format: str
    bits: int = 8
    classes: list[str] = Field(default_factory=lambda: ["N", "S", "V", "F", "Q"])
    model: ModelInfo
    sites: list[SiteInfo] = Field(default_factory=list)
    chain: ChainInfo | None = None
    artifacts: list[ArtifactEntry]
    provenance: Provenance
    pending: list[str] = Field(
        default_factory=list, description="build steps not run here, e.g. edgetpu_compiler"
    )
    files: dict[BundlePath, FileEntry] = Field(
        default_factory=dict,
        description="every file beside the manifest, with its hash (filled by the writer)",
    )

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self) -> BundleManifest:
        if self.kind == "kernels":
            self._kernels_only()
        names = [a.name for a in self.artifacts]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"artifact names repeat: {repeated}")
        files = [a.file for a in self.artifacts]
        repeated = sorted({f for f in files if files.count(f) > 1})
        if repeated:
            raise ValueError(f"artifact files repeat: {repeated}")
        if self.files:
            for a in self.artifacts:
                entry = self.files.get(a.file)
                if entry is None or (entry.sha256, entry.bytes) != (a.sha256, a.bytes):
                    raise ValueError(
                        f"artifact {a.name!r}: {a.file} is not listed with the same hash in files"
                    )
                if a.reference is not None and a.reference not in self.files:
                    raise ValueError(f"artifact {a.name!r}: reference {a.reference} is not listed in files")
        return self

    def _kernels_only(self) -> None:
        """A kernel-only bundle adds seed kernels to a base already on the device (model.checkpoint_sha256)."""
        base = [a.name for a in self.artifacts if a.kind in ("segment", "whole")]
        if base:
            raise ValueError(f"a kernels bundle carries no base model, but holds {base}")
        kernels = [a for a in self.artifacts if a.kind == "kernel"]
        if not kernels:
            raise ValueError("a kernels bundle holds at least one kernel artifact")
        unsited = [a.name for a in kernels if a.site is None]
        if unsited:
            raise ValueError(f"kernels {unsited} name no site")
        if self.chain is not None and self.chain.segments:
            raise ValueError("a kernels bundle has no segment chain (the base's chain is on the device)")

    @property
    def base_checkpoint(self) -> str:
        """SHA-256 of the base model's checkpoint; a kernels bundle only fits a base with this hash."""
        return self.model.checkpoint_sha256

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
    schema = BundleManifest.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$comment"] = f"kasmina-edge bundle manifest, schema {SCHEMA}"
    return schema


def json_schema_text() -> str:
    """``manifest.schema.json`` exactly as committed."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
