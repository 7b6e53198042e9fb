"""Packet formats, the Vtime/Htime encoding and sequence numbers (RFC 3626 3.3, 18.3, 19)."""

from __future__ import annotations

import pytest

from cloudrone.olsr import codec
from cloudrone.olsr.codec import Hello, Hna, LinkBlock, MalformedPacket, Message, Mid, Tc
from cloudrone.olsr.constants import (
    HELLO_MESSAGE,
    HNA_MESSAGE,
    MID_MESSAGE,
    SYM_LINK,
    SYM_NEIGH,
    TC_MESSAGE,
)


def test_decode_time_follows_the_formula_for_every_byte() -> None:
    for byte in range(256):
        a, b = byte >> 4, byte & 0xF
        assert codec.decode_time(byte) == pytest.approx((1 / 16) * (1 + a / 16) * 2**b)
    assert codec.decode_time(0x00) == 0.0625
    assert codec.decode_time(0xFF) == pytest.approx(3968.0)


@pytest.mark.parametrize(
    ("seconds", "byte"),
    [(2.0, 0x05), (6.0, 0x86), (5.0, 0x46), (15.0, 0xE7), (30.0, 0xE8), (0.0625, 0x00)],
)
def test_encode_time_rfc_defaults(seconds: float, byte: int) -> None:
    assert codec.encode_time(seconds) == byte


def test_encode_time_rounds_up_and_roundtrips_every_byte() -> None:
    for byte in range(256):
        assert codec.encode_time(codec.decode_time(byte)) == byte
    # between two representable values the encoding rounds up (section 18.3)
    for t in (0.07, 0.3, 1.01, 2.5, 7.3, 100.0, 1000.5):
        assert codec.decode_time(codec.encode_time(t)) >= t
        lower = codec.encode_time(t) - 0x10
        if lower >= 0:
            assert codec.decode_time(lower) < t


def test_encode_time_clamps() -> None:
    assert codec.encode_time(0.0) == 0x00
    assert codec.encode_time(-3) == 0x00
    assert codec.encode_time(float("nan")) == 0x00
    assert codec.encode_time(1e9) == 0xFF
    assert codec.encode_time(float("inf")) == 0xFF


def test_sequence_numbers_wrap_around() -> None:
    assert codec.seq_newer(1, 0)
    assert not codec.seq_newer(0, 1)
    assert codec.seq_newer(0, 65535)  # 0 follows 65535
    assert codec.seq_newer(10, 65000)
    assert not codec.seq_newer(65000, 10)
    assert not codec.seq_newer(5, 5)
    assert codec.seq_next(65535) == 0


def _roundtrip(msg: Message) -> Message:
    msg.raw = codec.encode_message(msg)
    packet = codec.decode_packet(codec.encode_packet(7, [msg.raw]))
    assert packet.seqno == 7
    assert len(packet.messages) == 1
    return packet.messages[0]


def test_hello_roundtrip_and_layout() -> None:
    body = Hello(0x05, 3, [LinkBlock((SYM_NEIGH << 2) | SYM_LINK, ["10.0.0.2", "10.0.0.3"])])
    msg = Message(HELLO_MESSAGE, 0x86, "10.0.0.1", 1, 0, 42, body)
    raw = codec.encode_message(msg)
    # 12 header + 4 hello header + 4 link header + 8 addresses
    assert len(raw) == 28
    assert raw[:4] == bytes([1, 0x86, 0, 28])
    assert raw[4:8] == bytes([10, 0, 0, 1])
    assert raw[8:12] == bytes([1, 0, 0, 42])
    assert raw[12:16] == bytes([0, 0, 0x05, 3])
    assert raw[16:20] == bytes([0x06, 0, 0, 12])
    got = _roundtrip(msg)
    assert got.body == body
    assert (got.originator, got.ttl, got.hop_count, got.seqno) == ("10.0.0.1", 1, 0, 42)
    assert got.validity == 6.0


def test_tc_mid_hna_roundtrip() -> None:
    tc = Message(TC_MESSAGE, 0xE7, "10.0.0.1", 255, 0, 1, Tc(65535, ["10.0.0.2"]))
    assert _roundtrip(tc).body == Tc(65535, ["10.0.0.2"])
    mid = Message(MID_MESSAGE, 0xE7, "10.0.0.1", 255, 0, 2, Mid(["10.1.0.1", "10.2.0.1"]))
    assert _roundtrip(mid).body == Mid(["10.1.0.1", "10.2.0.1"])
    hna = Hna([("10.42.1.0", 24), ("0.0.0.0", 0)])
    got = _roundtrip(Message(HNA_MESSAGE, 0xE7, "10.0.0.1", 255, 0, 3, hna))
    assert got.body == hna
    assert got.raw[12:].hex() == "0a2a0100ffffff00" + "00000000" * 2


def test_several_messages_in_one_packet_and_unknown_types_kept() -> None:
    a = codec.encode_message(Message(TC_MESSAGE, 0xE7, "10.0.0.1", 255, 0, 1, Tc(1, [])))
    b = codec.encode_message(Message(200, 0xE7, "10.0.0.1", 9, 3, 2, b"\x01\x02\x03\x04"))
    packet = codec.decode_packet(codec.encode_packet(1, [a, b]))
    assert [m.type for m in packet.messages] == [TC_MESSAGE, 200]
    assert packet.messages[1].body == b"\x01\x02\x03\x04"
    assert packet.messages[1].raw == b


def test_forwarded_copy_changes_only_ttl_and_hops() -> None:
    raw = codec.encode_message(Message(TC_MESSAGE, 0xE7, "10.0.0.1", 10, 2, 1, Tc(1, [])))
    out = codec.forwarded_copy(raw)
    msg = codec.decode_message(out)
    assert (msg.ttl, msg.hop_count) == (9, 3)
    assert out[:8] == raw[:8] and out[10:] == raw[10:]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "packet_truncated"),
        (b"\x00\x04\x00\x01", "packet_empty"),
        (b"\x00\x09\x00\x01\x02", "packet_length"),
        (b"\x00\x08\x00\x01\x02\x00\x00\x00", "message_truncated"),
        (b"\x00\x10\x00\x01" + bytes([2, 0, 0, 4]) + bytes(8), "message_size"),
        (b"\x00\x12\x00\x01" + bytes([2, 0, 0, 16]) + bytes(8) + b"\x00\x01", "message_size"),
        (b"\x00\x12\x00\x01" + bytes([2, 0, 0, 14]) + bytes(8) + b"\x00\x01", "tc_truncated"),
        (b"\x00\x16\x00\x01" + bytes([3, 0, 0, 18]) + bytes(8) + bytes(6), "mid_misaligned"),
        (
            b"\x00\x18\x00\x01"
            + bytes([4, 0, 0, 20])
            + bytes(8)
            + bytes([10, 0, 0, 0, 255, 0, 255, 0]),
            "hna_bad_netmask",
        ),
        (
            b"\x00\x18\x00\x01"
            + bytes([4, 0, 0, 20])
            + bytes(8)
            + bytes([10, 0, 0, 1, 255, 0, 0, 0]),
            "hna_host_bits",
        ),
        (
            b"\x00\x18\x00\x01" + bytes([1, 0, 0, 20]) + bytes(8) + bytes([0, 0, 5, 3, 6, 0, 0, 9]),
            "hello_link_size",
        ),
    ],
)
def test_malformed_packets_are_named(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket) as err:
        codec.decode_packet(data)
    assert err.value.reason == reason
