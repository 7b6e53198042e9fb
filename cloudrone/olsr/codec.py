"""OLSR packet and message formats (RFC 3626 sections 3.3, 6.1, 9.1, 5.1, 12.1, 18.3, 19),
and olsrd's link-quality HELLO and TC (types 201 and 202).

olsrd's LQ_HELLO is a HELLO whose every neighbour address is followed by four bytes:
the sender's link quality (LQ) for that neighbour, its neighbour link quality (NLQ),
both as 0..255 fractions of 1, and two zero bytes. Its LQ_TC is a TC whose reserved
field holds two "border" bytes (0xFF 0xFF: the whole advertised set in one message)
and whose every address is followed by the same four bytes.

Pure functions over bytes: no sockets, no clock. Addresses are dotted IPv4 strings.
Anything that does not parse raises :class:`MalformedPacket` with a short reason that
the daemon uses as a drop counter name.
"""

from __future__ import annotations

import math
import socket
import struct
from dataclasses import dataclass, field

from cloudrone.olsr.constants import (
    HELLO_MESSAGE,
    HNA_MESSAGE,
    LQ_HELLO_MESSAGE,
    LQ_TC_MESSAGE,
    MID_MESSAGE,
    SEQNO_MAX,
    TC_MESSAGE,
    VTIME_SCALE,
)

PACKET_HEADER = struct.Struct("!HH")
MESSAGE_HEADER = struct.Struct("!BBH4sBBH")
HELLO_HEADER = struct.Struct("!HBB")
LINK_HEADER = struct.Struct("!BBH")
TC_HEADER = struct.Struct("!HH")
LQ_TC_HEADER = struct.Struct("!HBB")
LQ_ENTRY = 8  # an address and its link-quality bytes
WHOLE_SET = 0xFF  # LQ_TC border byte: the message holds the whole advertised set


class MalformedPacket(ValueError):
    """A datagram that is not a well-formed OLSR packet. ``reason`` is a short key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# --- Vtime / Htime (section 18.3) ------------------------------------------------------


def decode_time(byte: int) -> float:
    """Seconds encoded by a Vtime/Htime byte: C * (1 + a/16) * 2^b, a the high nibble."""
    a = (byte >> 4) & 0x0F
    b = byte & 0x0F
    return VTIME_SCALE * (1 + a / 16) * (1 << b)


def encode_time(seconds: float) -> int:
    """The Vtime/Htime byte for ``seconds`` as section 18.3 computes it (rounding up).

    Values below the smallest representable time encode as 0x00, values above the
    largest as 0xFF.
    """
    if math.isnan(seconds) or seconds <= VTIME_SCALE:
        return 0x00
    if math.isinf(seconds):
        return 0xFF
    ratio = seconds / VTIME_SCALE
    b = math.floor(math.log2(ratio))
    # guard against log2 rounding at exact powers of two
    if (1 << (b + 1)) <= ratio:
        b += 1
    elif (1 << b) > ratio:
        b -= 1
    a = math.ceil(16 * (ratio / (1 << b) - 1))
    if a == 16:
        b += 1
        a = 0
    if b > 15:
        return 0xFF
    return (a << 4) | b


# --- Sequence numbers (section 19) -----------------------------------------------------


def seq_newer(s1: int, s2: int) -> bool:
    """True when sequence number ``s1`` is "greater than" ``s2`` under wrap-around."""
    half = SEQNO_MAX // 2
    return (s1 > s2 and s1 - s2 <= half) or (s2 > s1 and s2 - s1 > half)


def seq_next(seq: int) -> int:
    return (seq + 1) & SEQNO_MAX


# --- Message bodies --------------------------------------------------------------------


Quality = tuple[int, int]  # (LQ, NLQ), each 0..255 for 0..1


@dataclass(slots=True)
class LinkBlock:
    """One link message of a HELLO: a link code and the neighbour interface addresses;
    in an LQ_HELLO also each address's (LQ, NLQ)."""

    link_code: int
    addresses: list[str]
    quality: list[Quality] | None = None

    @property
    def link_type(self) -> int:
        return self.link_code & 0x03

    @property
    def neighbor_type(self) -> int:
        return (self.link_code >> 2) & 0x03


@dataclass(slots=True)
class Hello:
    htime: int  # encoded byte
    willingness: int
    links: list[LinkBlock] = field(default_factory=list)


@dataclass(slots=True)
class Tc:
    ansn: int
    addresses: list[str] = field(default_factory=list)
    quality: list[Quality] | None = None  # LQ_TC: each address's (LQ, NLQ)
    borders: tuple[int, int] = (WHOLE_SET, WHOLE_SET)  # LQ_TC only


@dataclass(slots=True)
class Mid:
    addresses: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Hna:
    networks: list[tuple[str, int]] = field(default_factory=list)  # (network, prefix length)


Body = Hello | Tc | Mid | Hna | bytes


@dataclass(slots=True)
class Message:
    """An OLSR message. ``vtime`` is the encoded byte; ``raw`` the bytes as received."""

    type: int
    vtime: int
    originator: str
    ttl: int
    hop_count: int
    seqno: int
    body: Body
    raw: bytes = b""

    @property
    def validity(self) -> float:
        return decode_time(self.vtime)


@dataclass(slots=True)
class Packet:
    seqno: int
    messages: list[Message]


# --- Decoding --------------------------------------------------------------------------


def _addresses(data: bytes, what: str) -> list[str]:
    if len(data) % 4:
        raise MalformedPacket(f"{what}_misaligned", f"{len(data)} bytes of addresses")
    ntoa = socket.inet_ntoa
    return [ntoa(data[i : i + 4]) for i in range(0, len(data), 4)]


def mask_to_prefix(mask: bytes) -> int:
    """Prefix length of a contiguous netmask; MalformedPacket if it is not contiguous."""
    value = int.from_bytes(mask, "big")
    prefix = bin(value).count("1")
    if value != ((0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF):
        raise MalformedPacket("hna_bad_netmask", socket.inet_ntoa(mask))
    return prefix


def prefix_to_mask(prefix: int) -> bytes:
    return ((0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF).to_bytes(4, "big")


def _with_quality(data: bytes, what: str) -> tuple[list[str], list[Quality]]:
    if len(data) % LQ_ENTRY:
        raise MalformedPacket(f"{what}_misaligned", f"{len(data)} bytes of addresses")
    ntoa = socket.inet_ntoa
    addresses = [ntoa(data[i : i + 4]) for i in range(0, len(data), LQ_ENTRY)]
    quality = [(data[i + 4], data[i + 5]) for i in range(0, len(data), LQ_ENTRY)]
    return addresses, quality


def _decode_hello(body: bytes, lq: bool = False) -> Hello:
    if len(body) < HELLO_HEADER.size:
        raise MalformedPacket("hello_truncated")
    _reserved, htime, willingness = HELLO_HEADER.unpack_from(body)
    links: list[LinkBlock] = []
    offset = HELLO_HEADER.size
    while offset < len(body):
        if len(body) - offset < LINK_HEADER.size:
            raise MalformedPacket("hello_link_truncated")
        code, _reserved2, size = LINK_HEADER.unpack_from(body, offset)
        if size < LINK_HEADER.size or offset + size > len(body):
            raise MalformedPacket("hello_link_size", f"link message size {size}")
        data = body[offset + 4 : offset + size]
        if lq:
            links.append(LinkBlock(code, *_with_quality(data, "lq_hello")))
        else:
            links.append(LinkBlock(code, _addresses(data, "hello")))
        offset += size
    return Hello(htime, willingness, links)


def _decode_tc(body: bytes) -> Tc:
    if len(body) < TC_HEADER.size:
        raise MalformedPacket("tc_truncated")
    ansn, _reserved = TC_HEADER.unpack_from(body)
    return Tc(ansn, _addresses(body[TC_HEADER.size :], "tc"))


def _decode_lq_tc(body: bytes) -> Tc:
    if len(body) < LQ_TC_HEADER.size:
        raise MalformedPacket("lq_tc_truncated")
    ansn, lower, upper = LQ_TC_HEADER.unpack_from(body)
    addresses, quality = _with_quality(body[LQ_TC_HEADER.size :], "lq_tc")
    return Tc(ansn, addresses, quality, (lower, upper))


def _decode_hna(body: bytes) -> Hna:
    if len(body) % 8:
        raise MalformedPacket("hna_misaligned", f"{len(body)} bytes")
    networks = []
    for i in range(0, len(body), 8):
        prefix = mask_to_prefix(body[i + 4 : i + 8])
        addr = int.from_bytes(body[i : i + 4], "big")
        if addr & ~int.from_bytes(prefix_to_mask(prefix), "big") & 0xFFFFFFFF:
            raise MalformedPacket("hna_host_bits", socket.inet_ntoa(body[i : i + 4]))
        networks.append((socket.inet_ntoa(body[i : i + 4]), prefix))
    return Hna(networks)


def decode_message(data: bytes) -> Message:
    """Decode exactly one message (header and body) from ``data``."""
    if len(data) < MESSAGE_HEADER.size:
        raise MalformedPacket("message_truncated")
    mtype, vtime, size, orig, ttl, hops, seqno = MESSAGE_HEADER.unpack_from(data)
    if size != len(data):
        raise MalformedPacket("message_size", f"size field {size}, have {len(data)}")
    raw_body = data[MESSAGE_HEADER.size :]
    body: Body
    if mtype == HELLO_MESSAGE:
        body = _decode_hello(raw_body)
    elif mtype == TC_MESSAGE:
        body = _decode_tc(raw_body)
    elif mtype == LQ_HELLO_MESSAGE:
        body = _decode_hello(raw_body, lq=True)
    elif mtype == LQ_TC_MESSAGE:
        body = _decode_lq_tc(raw_body)
    elif mtype == MID_MESSAGE:
        body = Mid(_addresses(raw_body, "mid"))
    elif mtype == HNA_MESSAGE:
        body = _decode_hna(raw_body)
    else:
        body = bytes(raw_body)
    return Message(mtype, vtime, socket.inet_ntoa(orig), ttl, hops, seqno, body, bytes(data))


def decode_packet(data: bytes) -> Packet:
    """Decode a UDP payload into a packet; raises MalformedPacket for anything wrong."""
    if len(data) < PACKET_HEADER.size:
        raise MalformedPacket("packet_truncated")
    length, seqno = PACKET_HEADER.unpack_from(data)
    if length != len(data):
        raise MalformedPacket("packet_length", f"length field {length}, datagram {len(data)}")
    messages = []
    offset = PACKET_HEADER.size
    while offset < len(data):
        if len(data) - offset < MESSAGE_HEADER.size:
            raise MalformedPacket("message_truncated")
        (size,) = struct.unpack_from("!H", data, offset + 2)
        if size < MESSAGE_HEADER.size or offset + size > len(data):
            raise MalformedPacket("message_size", f"size field {size}")
        messages.append(decode_message(data[offset : offset + size]))
        offset += size
    if not messages:
        raise MalformedPacket("packet_empty")
    return Packet(seqno, messages)


# --- Encoding --------------------------------------------------------------------------


def _aton(addresses: list[str]) -> bytes:
    aton = socket.inet_aton
    return b"".join(aton(a) for a in addresses)


def _aton_quality(addresses: list[str], quality: list[Quality]) -> bytes:
    aton = socket.inet_aton
    pairs = zip(addresses, quality, strict=True)
    return b"".join(aton(a) + bytes((lq, nlq, 0, 0)) for a, (lq, nlq) in pairs)


def encode_body(body: Body) -> bytes:
    """The bytes of a message body; blocks and TCs with ``quality`` in olsrd's LQ layout."""
    if isinstance(body, Hello):
        parts = [HELLO_HEADER.pack(0, body.htime, body.willingness)]
        for link in body.links:
            if link.quality is None:
                addrs = _aton(link.addresses)
            else:
                addrs = _aton_quality(link.addresses, link.quality)
            parts.append(LINK_HEADER.pack(link.link_code, 0, LINK_HEADER.size + len(addrs)))
            parts.append(addrs)
        return b"".join(parts)
    if isinstance(body, Tc):
        if body.quality is not None:
            return LQ_TC_HEADER.pack(body.ansn, *body.borders) + _aton_quality(
                body.addresses, body.quality
            )
        return TC_HEADER.pack(body.ansn, 0) + _aton(body.addresses)
    if isinstance(body, Mid):
        return _aton(body.addresses)
    if isinstance(body, Hna):
        return b"".join(socket.inet_aton(n) + prefix_to_mask(p) for n, p in body.networks)
    return bytes(body)


def encode_message(msg: Message) -> bytes:
    body = encode_body(msg.body)
    header = MESSAGE_HEADER.pack(
        msg.type,
        msg.vtime,
        MESSAGE_HEADER.size + len(body),
        socket.inet_aton(msg.originator),
        msg.ttl,
        msg.hop_count,
        msg.seqno,
    )
    return header + body


def forwarded_copy(raw: bytes) -> bytes:
    """The message bytes to retransmit: TTL decremented, hop count incremented (3.4.1)."""
    out = bytearray(raw)
    out[8] = max(out[8] - 1, 0)
    out[9] = min(out[9] + 1, 255)
    return bytes(out)


def encode_packet(seqno: int, messages: list[bytes]) -> bytes:
    payload = b"".join(messages)
    return PACKET_HEADER.pack(PACKET_HEADER.size + len(payload), seqno & SEQNO_MAX) + payload
