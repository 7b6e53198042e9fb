"""Rules the mission checker and the roles' filters share, written once.

Which WiFi channels a country allows, what a size such as ``300M`` means,
and which images a ``docker save`` archive holds. The Ansible filters
(plugins/filter/cloudrone.py) call these, so a bundle that passes
``cloudrone_cli mission validate`` passes the roles' own checks too.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tarfile
from typing import Any

# Channels a drone may use without radar detection (DFS), by regulatory domain.
# 2.4 GHz: 1-11 under FCC-style rules, 1-13 in most of the world, 14 in Japan
# alone (802.11b only). 5 GHz: 36-48 almost everywhere; 149-165 where that band
# is licence-free for WiFi. A country not listed gets the channels legal nearly
# everywhere (1-11, 36-48): a conservative choice, widened by adding it here.
_CHANNELS_1_11 = frozenset({"US", "CA", "TW", "MX", "PR"})
_CHANNELS_1_13 = frozenset(
    {"GB", "DE", "FR", "IT", "ES", "NL", "BE", "AT", "CH", "IE", "PT", "SE", "NO", "DK",
     "FI", "PL", "CZ", "GR", "HU", "RO", "BG", "HR", "SI", "SK", "LT", "LV", "EE", "LU",
     "IS", "MT", "CY", "TR", "UA", "AU", "NZ", "IN", "CN", "SG", "KR", "ZA", "BR", "AR",
     "CL", "PE", "KE", "NG", "GH", "ET", "TZ", "UG", "MA", "EG", "JO", "LB", "PK", "BD",
     "NP", "LK", "ID", "MY", "TH", "VN", "PH", "HT", "JP"}
)  # fmt: skip
_UNII3 = frozenset({"US", "CA", "MX", "PR", "AU", "NZ", "IN", "SG", "TW", "BR", "CN", "KR"})


def channels_allowed(country: str) -> list[int]:
    """The WiFi channels a drone may use in ``country`` (ISO 3166 alpha-2)."""
    country = str(country).upper()
    low = 14 if country == "JP" else 13 if country in _CHANNELS_1_13 else 11
    channels = [*range(1, low + 1), 36, 40, 44, 48]
    if country in _UNII3:
        channels += [149, 153, 157, 161, 165]
    return channels


_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def memory_bytes(value: Any) -> int:
    """A size as Docker writes it (``300M``, ``1g``, ``512MiB``, ``1024``) in bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([bkmgt]?)(?:i?b)?\s*", str(value), re.I)
    if not match:
        raise ValueError(f"{value!r} is not a size: write it like 64M, 1G or 1048576")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def docker_archive_images(path: str) -> list[str]:
    """What a ``docker save`` archive holds, as ``docker image ls --no-trunc``
    prints it: ``sha256:ID REPOSITORY:TAG`` for each tag (``<none>:<none>``
    for an untagged image). The ID is the digest of the image's config, in the
    legacy layout (``ID.json``) and the OCI one (``blobs/sha256/ID``) alike.

    Templates ask this for every drone and every service; an archive is read
    once for as long as its size and modification time stay the same.
    """
    path = os.path.expanduser(path)
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise ValueError(f"{path}: not a docker save archive ({exc})") from None
    return list(_archive_images(os.path.realpath(path), stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=64)
def _archive_images(path: str, _size: int, _mtime_ns: int) -> tuple[str, ...]:
    try:
        with tarfile.open(path) as tar:
            member = tar.extractfile("manifest.json")
            manifest = json.load(member) if member else None
    except (OSError, KeyError, tarfile.TarError, ValueError) as exc:
        raise ValueError(f"{path}: not a docker save archive ({exc})") from None
    if not isinstance(manifest, list):
        raise ValueError(f"{path}: not a docker save archive (manifest.json is not a list)")
    out = []
    for image in manifest:
        digest = str(image.get("Config", "")).rsplit("/", 1)[-1].removesuffix(".json")
        for tag in image.get("RepoTags") or ["<none>:<none>"]:
            out.append(f"sha256:{digest} {tag}")
    return tuple(sorted(out))
