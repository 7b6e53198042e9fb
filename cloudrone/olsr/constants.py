"""Protocol constants of RFC 3626 (section 18) used across the OLSR package."""

from __future__ import annotations

OLSR_PORT = 698

# Message types (section 18.4)
HELLO_MESSAGE = 1
TC_MESSAGE = 2
MID_MESSAGE = 3
HNA_MESSAGE = 4

MESSAGE_NAMES = {
    HELLO_MESSAGE: "HELLO",
    TC_MESSAGE: "TC",
    MID_MESSAGE: "MID",
    HNA_MESSAGE: "HNA",
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
