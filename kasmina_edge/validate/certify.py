"""``kasmina-edge certify``: the compliance checklist on a bundle, logs and a deployment's configuration.

Each check is mapped to the requirement it serves (``check_result.REQUIREMENTS``) and gives pass, fail or
skipped (nothing to check) with one line of evidence. It is a checklist tool, not a certification: passing it
says these properties hold for what it was shown, not that a product complies with HIPAA, the GDPR or an IEC
standard.

The configuration (``--config FILE``, TOML)::

    [mqtt]
    brokers = ["mqtts://broker.example:8883"]   # every broker URL the deployment uses
    acl = "mosquitto/acl"                        # default: the shipped kasmina_edge/net/mosquitto/acl
    mosquitto_conf = "mosquitto/mosquitto.conf"  # default: the shipped one
    [keys]
    paths = ["~/.config/kasmina-edge/keys"]      # more key folders or files (the keys and command-keys folders always)
    [audit]
    keys = { "operator.jsonl" = "keys/operator-audit.key" }   # audit log -> its key, where not beside it
    [store]
    monitor = "monitor.jsonl"                    # the monitor's store, for --erase and retention
    retention_days = 365                         # no record older than this (0: not checked)
    [patients]
    "P-001" = ["patch-01"]                       # a patient's devices (default: the device of that name)
    [data]
    folders = ["../shared/data/mitdb", "../shared/data/nstdb"]
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.validate import checks_logs, checks_network, checks_trust, erase, sbom
from kasmina_edge.validate.check_result import CheckResult

SCOPE = ("A checklist tool, not a certification: each check tests one property on what it was shown (the bundle, "
         "the logs, the configuration) and maps it to the requirement it serves. Passing does not make a product "
         "HIPAA- or GDPR-compliant or IEC 62304 / IEC 81001-5-1 conformant; that takes a quality and security "
         "process and an assessor.")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttConfig(_Strict):
    brokers: list[str] = Field(default_factory=list)
    acl: str = ""
    mosquitto_conf: str = ""


class KeysConfig(_Strict):
    paths: list[str] = Field(default_factory=list)


class AuditConfig(_Strict):
    keys: dict[str, str] = Field(default_factory=dict)


class StoreConfig(_Strict):
    monitor: str = ""
    retention_days: float = Field(default=0.0, ge=0.0)


class DataConfig(_Strict):
    folders: list[str] = Field(default_factory=list)


class CertifyConfig(_Strict):
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    keys: KeysConfig = Field(default_factory=KeysConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    patients: dict[str, list[str]] = Field(default_factory=dict)
    data: DataConfig = Field(default_factory=DataConfig)


def load_config(path: Path | None) -> tuple[CertifyConfig, Path]:
    """The config and the folder its relative paths are read from."""
    if path is None:
        return CertifyConfig(), Path.cwd()
    if not path.is_file():
        raise KasminaError(f"--config {path}: no such file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return CertifyConfig.model_validate(data), path.resolve().parent
    except tomllib.TOMLDecodeError as exc:
        raise KasminaError(f"--config {path}: not valid TOML ({exc})") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        raise KasminaError(f"--config {path}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None


@dataclass
class CertifyInputs:
    bundle: Path | None = None
    keys: Path | None = None
    logs: Path | None = None
    config: CertifyConfig = field(default_factory=CertifyConfig)
    base: Path = field(default_factory=Path.cwd)  # where the config's relative paths start
    erase: str | None = None
    sbom_out: Path | None = None
    data_folders: list[Path] | None = None  # None: the config's, else ../shared/data's


@dataclass
class CertifyReport:
    checks: list[CheckResult]
    scope: str = SCOPE

    @property
    def passed(self) -> bool:
        return not any(c.status == "fail" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "scope": self.scope, "checks": [c.to_dict() for c in self.checks]}


def _path(base: Path, text: str) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else base / p


def _data_folders(inp: CertifyInputs) -> list[Path]:
    if inp.data_folders is not None:
        return inp.data_folders
    if inp.config.data.folders:
        return [_path(inp.base, f) for f in inp.config.data.folders]
    from kasmina_edge.ecg.data import data_root

    root = data_root()
    return [p for p in (root / "mitdb", root / "nstdb") if p.is_dir()]


def _key_paths(inp: CertifyInputs) -> list[Path]:
    from kasmina_edge.contracts.bundle import keys_folder
    from kasmina_edge.net.commands import operator_keys_dir

    paths = [keys_folder(inp.keys), operator_keys_dir(), *(_path(inp.base, p) for p in inp.config.keys.paths)]
    if inp.logs is not None:
        paths.append(inp.logs)
    return paths


def run_checks(inp: CertifyInputs) -> CertifyReport:
    cfg = inp.config
    store = erase.JsonlMonitorStore(_path(inp.base, cfg.store.monitor)) if cfg.store.monitor else None
    devices = set(cfg.patients.get(inp.erase, [inp.erase])) if inp.erase else set()
    acl = _path(inp.base, cfg.mqtt.acl) if cfg.mqtt.acl else None
    conf = _path(inp.base, cfg.mqtt.mosquitto_conf) if cfg.mqtt.mosquitto_conf else (
        checks_network.default_acl().with_name("mosquitto.conf"))
    checks = [
        checks_logs.raw_ecg_check(inp.logs),
        checks_logs.logs_encrypted_check(inp.logs),
        checks_trust.signed_check(inp.bundle, inp.keys, inp.logs),
        checks_trust.audit_chain_check(inp.logs, {k: _path(inp.base, v) for k, v in cfg.audit.keys.items()}),
        checks_network.mqtt_acl_check(acl),
        checks_network.tls_check(cfg.mqtt.brokers, conf),
        checks_trust.keys_private_check(_key_paths(inp)),
        erase.retention_check(store.path if store else None, cfg.store.retention_days),
        erase.erasure_check(store, inp.erase, devices),
        sbom.sbom_check(inp.sbom_out),
        sbom.data_licences_check(_data_folders(inp)),
    ]
    return CertifyReport(checks)
