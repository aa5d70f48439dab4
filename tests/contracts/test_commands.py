"""Signed commands: every refusal reason, the nonce ledger, the freshness window, the clock."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kasmina_edge.contracts.commands import (
    COMMAND_NAMES,
    Command,
    CommandKeyError,
    Rejected,
    RejectReason,
    SignedCommand,
    Verifier,
    sign,
)
from kasmina_edge.contracts.errors import CommandRejected, KasminaError

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
T0 = 1_750_000_000.0


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make(clock: FakeClock | None = None, **kw: Any) -> tuple[Verifier, FakeClock]:
    clock = clock or FakeClock()
    return Verifier(KEY, "dev-1", clock=clock, **kw), clock


def refused(verifier: Verifier, envelope: SignedCommand | str | bytes, reason: RejectReason) -> Rejected:
    with pytest.raises(Rejected) as info:
        verifier.verify(envelope)
    assert info.value.reason is reason, str(info.value)
    assert isinstance(info.value, CommandRejected) and isinstance(info.value, KasminaError)
    assert f"({reason.value})" in str(info.value)
    return info.value


def test_signed_command_verifies_once_then_is_a_replay() -> None:
    verifier, clock = make()
    signed = sign(KEY, "dev-1", "set", {"alpha": 0.5, "site": 2}, clock=clock)
    command = verifier.verify(signed)
    assert (command.name, dict(command.args), command.device_id) == (
        "set",
        {"alpha": 0.5, "site": 2},
        "dev-1",
    )
    assert len(verifier) == 1
    clock.t += 10
    refused(verifier, signed, RejectReason.REPLAY)
    refused(verifier, signed.to_json(), RejectReason.REPLAY)


def test_wire_form_round_trips() -> None:
    signed = sign(KEY, "dev-1", "pause", clock=FakeClock())
    assert SignedCommand.from_json(signed.to_json()) == signed
    assert SignedCommand.from_json(signed.to_json().encode()) == signed
    verifier, _ = make()
    assert verifier.verify(signed.to_json()).name == "pause"


def test_nonces_are_random_16_bytes_hex() -> None:
    nonces = {sign(KEY, "dev-1", "pause").command.nonce for _ in range(50)}
    assert len(nonces) == 50
    assert all(len(bytes.fromhex(n)) == 16 for n in nonces)


@pytest.mark.parametrize(
    "field",
    ["device_id", "name", "args", "nonce", "issued_at"],
)
def test_any_change_to_a_signed_field_breaks_the_signature(field: str) -> None:
    verifier, clock = make()
    signed = sign(KEY, "dev-1", "set", {"alpha": 0.5}, clock=clock)
    data = signed.to_dict()
    data[field] = {
        "device_id": "dev-1x",
        "name": "resume",
        "args": {"alpha": 0.6},
        "nonce": "ab" * 16,
        "issued_at": T0 + 1,
    }[field]
    refused(verifier, json.dumps(data), RejectReason.BAD_SIGNATURE)


def test_wrong_key_is_a_bad_signature() -> None:
    verifier, clock = make()
    refused(verifier, sign(OTHER_KEY, "dev-1", "pause", clock=clock), RejectReason.BAD_SIGNATURE)
    assert len(verifier) == 0  # a refused command spends no nonce


def test_command_for_another_device_is_refused() -> None:
    verifier, clock = make()
    err = refused(verifier, sign(KEY, "dev-2", "pause", clock=clock), RejectReason.WRONG_DEVICE)
    assert "dev-2" in str(err) and "dev-1" in str(err)


@pytest.mark.parametrize(
    ("issued_offset", "reason"),
    [
        (-61.0, RejectReason.STALE),
        (-3600.0, RejectReason.STALE),
        (61.0, RejectReason.FUTURE_DATED),
        (86400.0, RejectReason.FUTURE_DATED),
    ],
)
def test_freshness_window_refuses_old_and_future_commands(issued_offset: float, reason: RejectReason) -> None:
    verifier, clock = make()
    signed = sign(KEY, "dev-1", "pause", clock=FakeClock(T0 + issued_offset))
    refused(verifier, signed, reason)


@pytest.mark.parametrize("issued_offset", [-60.0, -59.9, 0.0, 59.9, 60.0])
def test_freshness_window_edges_are_accepted(issued_offset: float) -> None:
    verifier, _ = make()
    assert verifier.verify(sign(KEY, "dev-1", "pause", clock=FakeClock(T0 + issued_offset))).name == "pause"


def test_ledger_is_pruned_after_ttl_and_replay_is_then_stale() -> None:
    verifier, clock = make()
    first = sign(KEY, "dev-1", "pause", clock=clock)
    verifier.verify(first)
    clock.t += 299
    verifier.verify(sign(KEY, "dev-1", "resume", clock=clock))
    assert len(verifier) == 2
    clock.t += 2  # the first nonce is past its 5-minute TTL
    verifier.verify(sign(KEY, "dev-1", "pause", clock=clock))
    assert len(verifier) == 2
    # forgetting the first nonce opens no hole: the command is long stale by then
    refused(verifier, first, RejectReason.STALE)


def test_future_dated_command_replayed_late_stays_refused() -> None:
    """Issued 60 s ahead, accepted; its nonce outlives its freshness, so no replay ever passes."""
    verifier, clock = make()
    signed = sign(KEY, "dev-1", "pause", clock=FakeClock(T0 + 60))
    verifier.verify(signed)
    for dt in (1, 60, 119):
        clock.t = T0 + dt
        refused(verifier, signed, RejectReason.REPLAY)
    clock.t = T0 + 121
    refused(verifier, signed, RejectReason.STALE)


def test_ttl_shorter_than_window_is_refused_at_construction() -> None:
    with pytest.raises(CommandKeyError, match="must cover the whole freshness window"):
        Verifier(KEY, "dev-1", window_s=200, nonce_ttl_s=300)


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (b"not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"device_id": "dev-1"}), "fields missing"),
        (None, "unknown command 'format-disk'"),
    ],
)
def test_malformed_envelopes(payload: str | bytes | None, detail: str) -> None:
    verifier, clock = make()
    if payload is None:
        data = sign(KEY, "dev-1", "pause", clock=clock).to_dict()
        data["name"] = "format-disk"
        payload = json.dumps(data)
    err = refused(verifier, payload, RejectReason.MALFORMED)
    assert detail in str(err)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("nonce", "xyz"),
        ("nonce", "ab" * 8),
        ("issued_at", "now"),
        ("issued_at", True),
        ("args", [1]),
        ("device_id", ""),
        ("signature", 5),
        ("signature", "é" * 64),
        ("signature", "zz" * 32),
        ("signature", "ab" * 31),
        ("issued_at", 10**400),
        ("issued_at", float("inf")),
    ],
)
def test_malformed_fields(field: str, value: Any) -> None:
    verifier, clock = make()
    data = sign(KEY, "dev-1", "pause", clock=clock).to_dict()
    data[field] = value
    refused(verifier, json.dumps(data), RejectReason.MALFORMED)


def test_forged_non_hex_signature_built_in_code_is_a_bad_signature() -> None:
    """compare_digest refuses non-ASCII str; the verifier must answer with a refusal, not a TypeError."""
    verifier, clock = make()
    good = sign(KEY, "dev-1", "pause", clock=clock)
    for forged in ("é" * 64, "", "AB" * 32):
        refused(verifier, SignedCommand(good.command, forged), RejectReason.BAD_SIGNATURE)
    assert verifier.verify(good) == good.command  # the refusals spent no nonce


def test_deeply_nested_json_is_malformed_not_a_crash() -> None:
    verifier, _ = make()
    refused(verifier, "[" * 100_000 + "]" * 100_000, RejectReason.MALFORMED)


def test_signing_refuses_unknown_commands_non_json_args_and_short_keys() -> None:
    with pytest.raises(Rejected, match="unknown command"):
        sign(KEY, "dev-1", "self-destruct")
    with pytest.raises(Rejected, match="not plain JSON"):
        sign(KEY, "dev-1", "set", {"x": float("nan")})
    with pytest.raises(Rejected, match="not plain JSON"):
        sign(KEY, "dev-1", "set", {"x": object()})
    with pytest.raises(CommandKeyError, match="at least 16 bytes"):
        sign(b"short", "dev-1", "pause")
    with pytest.raises(CommandKeyError):
        Verifier(b"short", "dev-1")


def test_canonical_bytes_do_not_depend_on_argument_order() -> None:
    a = Command("d", "set", {"a": 1, "b": [1, 2]}, "00" * 16, T0)
    b = Command("d", "set", {"b": [1, 2], "a": 1}, "00" * 16, T0)
    assert a.canonical_bytes() == b.canonical_bytes()
    assert b" " not in a.canonical_bytes()


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_args = st.dictionaries(
    st.text(max_size=10),
    st.recursive(
        json_scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=8,
    ),
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(COMMAND_NAMES)), json_args, st.floats(-60, 60))
def test_any_plain_json_command_survives_the_wire(name: str, args: dict[str, Any], skew: float) -> None:
    verifier, clock = make()
    signed = sign(KEY, "dev-1", name, args, clock=FakeClock(T0 + skew))
    command = verifier.verify(signed.to_json())
    assert command.name == name and dict(command.args) == args
