"""The mission's flight key: who holds it may fly the mission's drones.

A passphrase, as MAVProxy and ArduPilot's ground stations take one; the
32-byte MAVLink 2 signing key is its SHA-256. It comes from the operator
(``$CLOUDRONE_FLIGHT_PASSPHRASE`` or the bundle's vault, so that several
controllers share one) or is made on the first ``mission up`` and kept in
the mission's run state, never in the bundle, readable by its owner alone.
The inventory names the key's file; Ansible reads it where a role needs it,
so no rendered file and no log holds it.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cloudrone.mission.model import FLIGHT_PASSPHRASE_ENV, Mission, read_vault
from cloudrone.paths import mission_state_dir

PASSPHRASE_FILE = "passphrase"
KEY_FILE = "signing.key"


@dataclass(frozen=True)
class FlightKey:
    folder: Path
    # where the passphrase came from: "made" (this controller), "kept" (made
    # earlier), or the environment variable / vault entry that gave it
    origin: str

    @property
    def passphrase_file(self) -> Path:
        return self.folder / PASSPHRASE_FILE

    @property
    def key_file(self) -> Path:
        """64 hex digits: the form the flight bridge role and pymavlink take."""
        return self.folder / KEY_FILE


def folder(mission: Mission) -> Path:
    return mission_state_dir(mission.name) / "flight"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner alone, from the first byte."""
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)
    os.replace(tmp, path)


def key_text(path: Path) -> str:
    """What a key file holds, stripped; empty when there is none."""
    return path.read_text(encoding="ascii").strip() if path.is_file() else ""


def _given(mission: Mission) -> tuple[str, str] | None:
    vault, _ = read_vault(mission)
    if vault.get(FLIGHT_PASSPHRASE_ENV):
        return str(vault[FLIGHT_PASSPHRASE_ENV]), f"the vault's {FLIGHT_PASSPHRASE_ENV}"
    if os.environ.get(FLIGHT_PASSPHRASE_ENV):
        return os.environ[FLIGHT_PASSPHRASE_ENV], f"${FLIGHT_PASSPHRASE_ENV}"
    return None


def problem(mission: Mission) -> str | None:
    """Why the passphrase the operator gives cannot be used, or None."""
    given = _given(mission)
    if given is None or not mission.flight.signing:
        return None
    passphrase, origin = given
    if not passphrase.isascii() or not passphrase.isprintable() or " " in passphrase:
        return (f"{mission.bundle / 'mission.yml'} flight: {origin} must be printable ASCII "
                "without spaces (ground stations read it as one word); choose another")  # fmt: skip
    if len(passphrase) < 16:
        return (f"{mission.bundle / 'mission.yml'} flight: {origin} holds "
                f"{len(passphrase)} characters; give at least 16, or unset it and let "
                "mission up make a key")  # fmt: skip
    return None


def ensure(mission: Mission) -> FlightKey | None:
    """The mission's flight key, made or refreshed in its run state; None when the
    bundle flies unsigned. Call :func:`problem` first."""
    if not mission.flight.signing:
        return None
    where = folder(mission)
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(where, 0o700)
    kept = key_text(where / PASSPHRASE_FILE)
    given = _given(mission)
    if given is not None:
        passphrase, origin = given
    elif kept:
        passphrase, origin = kept, "kept"
    else:
        passphrase, origin = secrets.token_urlsafe(32), "made"  # 43 characters, 256 bits
    key = FlightKey(where, origin)
    if kept != passphrase:
        _write_private(key.passphrase_file, passphrase + "\n")
    from cloudrone.flight.signing import passphrase_key  # pymavlink loads only here

    hex_key = passphrase_key(passphrase).hex()
    if key_text(key.key_file) != hex_key:
        _write_private(key.key_file, hex_key + "\n")
    return key
