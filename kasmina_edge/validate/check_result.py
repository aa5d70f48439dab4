"""One compliance check's verdict, the requirements it serves, and its evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kasmina_edge.validate.result import Status


@dataclass
class CheckResult:
    id: str
    title: str
    requirements: list[str]  # HIPAA Security Rule safeguard, GDPR article, IEC 62304 / 81001-5-1 activity
    status: Status
    evidence: str  # one line: what was looked at and what was found
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "requirements": self.requirements, "status": self.status,
                "evidence": self.evidence, "details": self.details[:50]}


# The requirement each check serves (45 CFR 164.312 paragraphs; GDPR articles; IEC activities where one fits).
REQUIREMENTS: dict[str, list[str]] = {
    "raw-ecg": ["HIPAA 164.312(e)(1) transmission security, (e)(2)(ii) encryption",
                "GDPR Art. 5(1)(c) data minimisation, Art. 32(1)(a) encryption"],
    "logs-encrypted": ["HIPAA 164.312(a)(2)(iv) encryption and decryption", "GDPR Art. 32(1)(a) encryption"],
    "signed": ["HIPAA 164.312(c)(1) integrity, (d) person or entity authentication",
               "GDPR Art. 32(1)(b) integrity", "IEC 62304 5.8 software release; IEC 81001-5-1 secure release (integrity)"],
    "audit-chain": ["HIPAA 164.312(b) audit controls, (c)(2) mechanism to authenticate ePHI",
                    "GDPR Art. 5(2) accountability", "IEC 81001-5-1 security logging"],
    "mqtt-acl": ["HIPAA 164.312(a)(1) access control", "GDPR Art. 25 data protection by design, Art. 32(1)(b)"],
    "tls": ["HIPAA 164.312(e)(1) transmission security, (e)(2)(ii) encryption", "GDPR Art. 32(1)(a)"],
    "keys-private": ["HIPAA 164.312(a)(1) access control", "GDPR Art. 32(1)(b) confidentiality",
                     "IEC 81001-5-1 protection of secrets"],
    "retention": ["GDPR Art. 5(1)(e) storage limitation"],
    "erasure": ["GDPR Art. 17 right to erasure", "HIPAA: no erasure right (retention rules apply)"],
    "sbom": ["IEC 62304 8.1.2 identification of SOUP", "IEC 81001-5-1 third-party component inventory (SBOM)"],
    "data-licences": ["data licences of the records used (ODC-By 1.0 attribution for MIT-BIH, NSTDB)"],
}

TITLES: dict[str, str] = {
    "raw-ecg": "no raw ECG in telemetry logs unless requested and encrypted (AES-256-GCM)",
    "logs-encrypted": "device logs with patient data encrypted at rest",
    "signed": "every bundle and command signed and verified",
    "audit-chain": "audit chains intact (keyed hash chain, signed head)",
    "mqtt-acl": "MQTT access control per device",
    "tls": "TLS on every broker URL",
    "keys-private": "keys not readable by group or others",
    "retention": "no patient data kept past the retention period",
    "erasure": "one patient's data erased on request, proved by a re-scan",
    "sbom": "software bill of materials (CycloneDX) of the installed environment",
    "data-licences": "licences of the data used",
}


def check(cid: str, status: Status, evidence: str, details: list[str] | None = None) -> CheckResult:
    return CheckResult(cid, TITLES[cid], REQUIREMENTS[cid], status, evidence, list(details or []))
