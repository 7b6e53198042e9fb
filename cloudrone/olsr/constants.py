"""Protocol constants of RFC 3626 (section 18) used across the OLSR package."""

from __future__ import annotations

OLSR_PORT = 698

# Message types (section 18.4)
HELLO_MESSAGE = 1
TC_MESSAGE = 2
MID_MESSAGE = 3
HNA_MESSAGE = 4

# olsrd's link-quality messages (its LinkQualityLevel 2, the default: ETX). Not RFC
# 3626 and not implemented here: an olsrd node sending them never becomes a neighbour,
# so the daemon reports their senders (Node.lq_senders) instead of ignoring them.
LQ_HELLO_MESSAGE = 201
LQ_TC_MESSAGE = 202
LQ_MESSAGES = frozenset({LQ_HELLO_MESSAGE, LQ_TC_MESSAGE})
# senders of link-quality messages remembered at once; beyond that they are only counted
MAX_LQ_SENDERS = 64
# refused announcements and nodes outside the fleet kept for /warnings, at most
MAX_REPORTED = 64

MESSAGE_NAMES = {
    HELLO_MESSAGE: "HELLO",
    TC_MESSAGE: "TC",
    MID_MESSAGE: "MID",
    HNA_MESSAGE: "HNA",
    LQ_HELLO_MESSAGE: "LQ_HELLO",
    LQ_TC_MESSAGE: "LQ_TC",
}

# Link types (section 18.5)
UNSPEC_LINK = 0
ASYM_LINK = 1
SYM_LINK = 2
LOST_LINK = 3

# Neighbor types (section 18.6)
NOT_NEIGH = 0
SYM_NEIGH = 1
MPR_NEIGH = 2

# Willingness (section 18.8)
WILL_NEVER = 0
WILL_LOW = 1
WILL_DEFAULT = 3
WILL_HIGH = 6
WILL_ALWAYS = 7

# Emission intervals and holding times (sections 18.2 and 18.3), seconds
HELLO_INTERVAL = 2.0
REFRESH_INTERVAL = 2.0
TC_INTERVAL = 5.0
MID_INTERVAL = TC_INTERVAL
HNA_INTERVAL = TC_INTERVAL
NEIGHB_HOLD_TIME = 3 * REFRESH_INTERVAL
TOP_HOLD_TIME = 3 * TC_INTERVAL
DUP_HOLD_TIME = 30.0
MID_HOLD_TIME = 3 * MID_INTERVAL
HNA_HOLD_TIME = 3 * HNA_INTERVAL

# Scaling factor of the Vtime/Htime encoding (section 18.3), seconds
VTIME_SCALE = 1.0 / 16.0

# TC redundancy (section 15.1)
TC_REDUNDANCY_SELECTORS = 0
TC_REDUNDANCY_SELECTORS_AND_MPRS = 1
TC_REDUNDANCY_ALL_NEIGHBORS = 2

MAX_TTL = 255
SEQNO_MAX = 0xFFFF

# Timer profiles, by name: ``profile:`` in the daemon's configuration. Each sets
# the emission intervals, validity (holding) times and the jitter; a timer key
# written in the configuration overrides its profile's value.
PROFILE_TIMERS = (
    "hello_interval", "hello_validity", "tc_interval", "tc_validity",
    "mid_interval", "mid_validity", "hna_interval", "hna_validity", "max_jitter",
)  # fmt: skip
PROFILES: dict[str, dict[str, float]] = {
    # RFC 3626 section 18.2/18.3: a lost neighbour is noticed after 6 s.
    "rfc": {
        "hello_interval": HELLO_INTERVAL,
        "hello_validity": NEIGHB_HOLD_TIME,
        "tc_interval": TC_INTERVAL,
        "tc_validity": TOP_HOLD_TIME,
        "mid_interval": MID_INTERVAL,
        "mid_validity": MID_HOLD_TIME,
        "hna_interval": HNA_INTERVAL,
        "hna_validity": HNA_HOLD_TIME,
        "max_jitter": HELLO_INTERVAL / 4,
    },
    # Drones move: HELLO four times as often, so a lost neighbour is noticed after
    # 1.5 s (still three missed HELLOs); routes go around it in under 3 s. A change of
    # neighbours sends TC, MID and HNA at once, so their periodic rounds only refresh:
    # TC keeps the RFC's pace, MID and HNA (addresses and networks a flight does not
    # change) half of it. Flooded messages, not HELLOs, are most of the traffic; with
    # TC, MID and HNA every 2 s this profile cost 2.1 kB/s per drone on the 5x5 grid
    # (docs/bench/olsr.md, "Timer profiles").
    "fast": {
        "hello_interval": 0.5,
        "hello_validity": 1.5,
        "tc_interval": 5.0,
        "tc_validity": 15.0,
        "mid_interval": 10.0,
        "mid_validity": 30.0,
        "hna_interval": 10.0,
        "hna_validity": 30.0,
        "max_jitter": 0.125,
    },
}
DEFAULT_PROFILE = "rfc"
