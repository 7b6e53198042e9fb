"""``mission pack`` and ``mission up --from``: a mission that needs no Internet.

A pack is one tar a base camp carries into the field:

- ``bundle/``: the mission bundle as it is (mission.yml, images/, content,
  the encrypted secrets file);
- ``images/SERVICE.tar``: the images the bundle builds here (``build:``);
- ``wheelhouse/``: the drone-side Python bundle (cloudrone.wheelhouse) for
  each target, e.g. ``cp311-aarch64`` and ``cp311-armv7l``;
- ``apt/``: the Debian packages the drone roles install (every ``*_packages``
  list in their defaults) with everything they depend on, and the signed
  package indices apt checks them against, laid out as apt-cacher-ng's cache;
- ``manifest.json`` (first): every other member's size and SHA-256.

``up --from`` checks every member against the manifest before anything
changes, unpacks into the mission's state folder, and runs a second
apt-cacher-ng in offline mode on that cache (``OFFLINE_PORT``): the drones
take their packages from it, apt verifies them against Debian's signatures
as it always does, and nothing is fetched from anywhere.
"""

from __future__ import annotations

import getpass
import hashlib
import io
import ipaddress
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

from cloudrone import wheelhouse
from cloudrone.fleet import image as drone_image
from cloudrone.mission.model import Mission
from cloudrone.mission.plan import built_archive
from cloudrone.paths import mission_state_dir, project_root

Log = Callable[[str], None]

FORMAT = 1
MANIFEST = "manifest.json"
# the controller's apt-cacher-ng is drone_image.CACHE_PORT; the pack's own, offline, beside it
OFFLINE_PORT = 3143
APT_CACHE_DIR = Path(os.environ.get("CLOUDRONE_APT_CACHE_DIR", "/var/cache/apt-cacher-ng"))
ACNG_CONFIG = Path("/etc/apt-cacher-ng")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# The roles that run on drones; the base camp's own packages are the controller's business.
DRONE_ROLES = ("base", "mesh", "access_point", "docker_engine")
# Python on each Debian release, and Debian's name for each machine.
SUITE_PYTHON = {"bookworm": "cp311", "trixie": "cp313"}
DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf"}
MODEL_MACHINE = {"pi2": "armv7l", "pi3": "aarch64", "pi4": "aarch64", "pi5": "aarch64"}


class PackError(RuntimeError):
    """A pack that cannot be made or used; the message says what to do."""


@dataclass(frozen=True)
class Target:
    suite: str
    machine: str

    @property
    def wheel(self) -> wheelhouse.Target:
        return wheelhouse.Target.parse(f"{SUITE_PYTHON[self.suite]}-{self.machine}")

    @property
    def arch(self) -> str:
        return DEB_ARCH[self.machine]

    def __str__(self) -> str:
        return f"{self.suite}/{self.machine}"


def default_targets(mission: Mission, suite: str) -> list[Target]:
    """Simulated drones run on this machine; real ones on what their model is."""
    if mission.target == "sim":
        machines = [platform.machine()]
    else:
        machines = sorted({MODEL_MACHINE[d.model] for d in mission.drones})
    return [Target(suite, m) for m in machines]


def parse_targets(suite: str, machines: Iterable[str]) -> list[Target]:
    if suite not in SUITE_PYTHON:
        raise PackError(f"--suite {suite}: use one of {', '.join(SUITE_PYTHON)}")
    targets = []
    for machine in machines:
        if machine not in DEB_ARCH:
            raise PackError(f"--machine {machine}: use one of {', '.join(DEB_ARCH)}")
        targets.append(Target(suite, machine))
    return targets


def drone_packages(root: Path | None = None) -> list[str]:
    """Every Debian package a drone role may install: its defaults' ``*_packages`` lists."""
    root = root or project_root()
    names: set[str] = set()
    for role in DRONE_ROLES:
        defaults = yaml.safe_load((root / "roles" / role / "defaults" / "main.yml").read_text())
        for key, value in (defaults or {}).items():
            if key.endswith("_packages") and isinstance(value, list):
                names.update(str(v) for v in value if "{" not in str(v))
    return sorted(names)


# --- Debian packages ------------------------------------------------------------


def _cache_path(uri: str) -> str:
    """``http://deb.debian.org/debian/pool/x.deb`` -> ``debrep/pool/x.deb`` (the cache layout)."""
    parts = urlsplit(uri)
    path = unquote(parts.path)
    if not path.startswith("/debian/"):
        raise PackError(f"{uri}: only Debian's archive (…/debian/) can be packed")
    return "debrep/" + path.removeprefix("/debian/")


def _apt(
    root: Path, target: Target, *args: str, tool: str = "apt-get"
) -> subprocess.CompletedProcess:
    options = [
        f"Dir={root}",
        f"Dir::State::status={root}/status",
        f"APT::Architecture={target.arch}",
        f"APT::Architectures::={target.arch}",
        f"Acquire::http::Proxy=http://127.0.0.1:{drone_image.CACHE_PORT}",
        # what a drone fetches: its indices and the English descriptions
        "Acquire::Languages::=en",
        "Debug::NoLocking=1",
        # a private folder that apt's own user may not read: download as ourselves
        f"APT::Sandbox::User={getpass.getuser()}",
    ]
    argv = [tool, "-qq"]
    for option in options:
        argv += ["-o", option]
    return subprocess.run([*argv, *args], capture_output=True, text=True, check=False)


def resolve_debs(target: Target, packages: list[str], mirror: str, log: Log) -> list[str]:
    """The cache files (relative to apt-cacher-ng's cache) a drone of ``target`` needs.

    apt resolves every package and all it depends on as if nothing were
    installed (a superset of what a stock image lacks), through the
    controller's apt-cacher-ng, which thereby holds all of it.
    """
    if shutil.which("apt-get") is None:
        raise PackError("apt-get not found: mission pack runs on a Debian or Ubuntu controller")
    with tempfile.TemporaryDirectory(prefix="cloudrone-apt-") as tmp:
        root = Path(tmp)
        for d in ("etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d",
                  "etc/apt/trusted.gpg.d", "var/lib/apt/lists/partial",
                  "var/cache/apt/archives/partial"):  # fmt: skip
            (root / d).mkdir(parents=True)
        (root / "status").touch()
        dists = [target.suite, f"{target.suite}-updates"]
        (root / "etc/apt/sources.list").write_text(
            "".join(f"deb [signed-by={KEYRING}] {mirror} {d} main\n" for d in dists)
        )
        proc = _apt(root, target, "update")
        if proc.returncode != 0 or "W: " in proc.stderr or "E: " in proc.stderr:
            raise PackError(
                f"apt could not read {target.suite}'s package lists for {target.arch} through the "
                f"package cache (127.0.0.1:{drone_image.CACHE_PORT}; scripts/setup.sh starts it):\n"
                + proc.stderr.strip()
            )
        known = set(_apt(root, target, "pkgnames", tool="apt-cache").stdout.split())
        wanted = [p for p in packages if p in known]
        skipped = sorted(set(packages) - known)
        if skipped:
            log(f"    {target}: not in {target.suite} (left out): {', '.join(skipped)}")
        proc = _apt(root, target, "install", "--download-only", "--print-uris", "-y",
                    "--no-install-recommends", *wanted)  # fmt: skip
        if proc.returncode != 0:
            raise PackError(f"apt cannot install {' '.join(wanted)} on {target}:\n{proc.stderr}")
        uris = [
            line.split()[0].strip("'") for line in proc.stdout.splitlines() if line.startswith("'")
        ]
        # fetch them once, so that the controller's cache holds every one
        proc = _apt(root, target, "install", "--download-only", "-y",
                    "--no-install-recommends", *wanted)  # fmt: skip
        if proc.returncode != 0:
            raise PackError(f"downloading the packages for {target} failed:\n{proc.stderr}")
        files = [_cache_path(u) for u in uris]
        files += _index_files(dists, target.arch)
    return files


def _index_files(dists: list[str], arch: str) -> list[str]:
    """Each dist's InRelease and the package lists it signs, as apt-cacher-ng keeps them."""
    files = []
    wanted = re.compile(rf"^main/(binary-{arch}/Packages|i18n/Translation-en)(\.\w+)?$")
    for dist in dists:
        inrelease = f"debrep/dists/{dist}/InRelease"
        files.append(inrelease)
        text = (APT_CACHE_DIR / inrelease).read_text(errors="replace")
        sha256 = text.split("\nSHA256:\n", 1)[1] if "\nSHA256:\n" in text else ""
        for line in sha256.splitlines():
            fields = line.split()
            if len(fields) != 3 or not wanted.match(fields[2]):
                continue
            digest, _, name = fields
            folder = name.rsplit("/", 1)[0]
            for candidate in (f"debrep/dists/{dist}/{folder}/by-hash/SHA256/{digest}",
                              f"debrep/dists/{dist}/{name}"):  # fmt: skip
                if (APT_CACHE_DIR / candidate).is_file():
                    files.append(candidate)
    return files


# --- The archive ------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pack(mission: Mission, out: Path, targets: list[Target], log: Log) -> dict:
    """Write the pack of ``mission`` to ``out``; returns the manifest.

    The images the bundle builds must be built already (``deploy.build_images``).
    """
    members: dict[str, Path] = {}
    for f in sorted(p for p in mission.bundle.rglob("*") if p.is_file()):
        members["bundle/" + f.relative_to(mission.bundle).as_posix()] = f
    for service in mission.services:
        if service.build:
            members[f"images/{service.name}.tar"] = built_archive(mission, service)

    log(f"    drone Python bundles: {', '.join(str(t.wheel) for t in targets)}")
    wheel_dest = project_root() / "build" / "wheelhouse"
    try:
        result = wheelhouse.build(wheel_dest, [t.wheel for t in targets])
    except wheelhouse.WheelhouseError as exc:
        raise PackError(str(exc)) from None
    members[f"wheelhouse/{result['wheel']}"] = wheel_dest / result["wheel"]
    for t in targets:
        folder = wheel_dest / str(t.wheel)
        for f in sorted(folder.iterdir()):
            members[f"wheelhouse/{t.wheel}/{f.name}"] = f

    mirror = drone_image.Recipe.load().mirror
    packages = drone_packages()
    log(f"    Debian packages ({len(packages)} named by the drone roles, and what they need)")
    for t in targets:
        files = resolve_debs(t, packages, mirror, log)
        for rel in files:
            for name in (rel, rel + ".head"):
                src = APT_CACHE_DIR / name
                if not src.is_file():
                    raise PackError(
                        f"{src} is not in the package cache after apt fetched it; "
                        "is apt-cacher-ng's CacheDir elsewhere? set CLOUDRONE_APT_CACHE_DIR"
                    )
                members["apt/" + name] = src
        log(f"    {t}: {sum(1 for f in files if f.endswith('.deb'))} packages")

    targets_entry = [
        {"suite": t.suite, "machine": t.machine, "wheel": str(t.wheel)} for t in targets
    ]
    return write_archive(out, mission.name, targets_entry, members)


def write_archive(out: Path, mission: str, targets: list[dict], members: dict[str, Path]) -> dict:
    """The pack itself: the manifest first, then every member; written whole or not at all."""
    manifest = {
        "format": FORMAT,
        "mission": mission,
        "targets": targets,
        "files": {
            name: {"size": path.stat().st_size, "sha256": _sha256(path)}
            for name, path in sorted(members.items())
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        data = (json.dumps(manifest, indent=1) + "\n").encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        tar.addfile(info, io.BytesIO(data))
        for name, path in sorted(members.items()):
            info = tar.gettarinfo(str(path), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with path.open("rb") as f:
                tar.addfile(info, f)
    partial.replace(out)
    return manifest


# --- Using a pack -----------------------------------------------------------------


@dataclass(frozen=True)
class Unpacked:
    folder: Path
    manifest: dict

    @property
    def bundle(self) -> Path:
        return self.folder / "bundle"

    @property
    def wheelhouse(self) -> Path:
        return self.folder / "wheelhouse"

    @property
    def apt_cache(self) -> Path:
        return self.folder / "apt"

    def image(self, service: str) -> Path | None:
        path = self.folder / "images" / f"{service}.tar"
        return path if path.is_file() else None


def read_manifest(archive: Path) -> dict:
    """The manifest, or a PackError that names the archive and the fix."""
    fix = "make it again with cloudrone_cli mission pack BUNDLE"
    try:
        with tarfile.open(archive) as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST:
                raise PackError(f"{archive}: not a mission pack (no {MANIFEST} first); {fix}")
            manifest = json.load(tar.extractfile(first))
    except (OSError, tarfile.TarError, ValueError) as exc:
        raise PackError(f"{archive}: cannot be read as a mission pack ({exc}); {fix}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PackError(f"{archive}: pack format {manifest.get('format')!r}, this cloudrone reads "
                        f"{FORMAT}; {fix} with this version")  # fmt: skip
    if not isinstance(manifest.get("mission"), str) or not isinstance(manifest.get("files"), dict):
        raise PackError(f"{archive}: {MANIFEST} lacks mission or files; {fix}")
    return manifest


def unpack(archive: Path, log: Log) -> Unpacked:
    """Check every member against the manifest, then unpack into the mission's state folder.

    Nothing is written unless every member is what the manifest says, and an
    archive already unpacked there is not unpacked again.
    """
    manifest = read_manifest(archive)
    files: dict[str, dict] = manifest["files"]
    digest = _sha256(archive)
    dest = mission_state_dir(manifest["mission"]) / "pack"
    stamp = dest / ".archive-sha256"
    if stamp.is_file() and stamp.read_text().strip() == digest:
        log(f"    {archive} is unpacked already ({dest})")
        return Unpacked(dest, manifest)
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=".pack-", dir=dest.parent))
    try:
        seen = set()
        with tarfile.open(archive) as tar:
            for member in tar:
                if member.name == MANIFEST:
                    continue
                entry = files.get(member.name)
                if entry is None or not member.isfile():
                    raise PackError(f"{archive}: {member.name} is not in its manifest; "
                                    "the archive was altered: pack it again")  # fmt: skip
                tar.extract(member, fresh, filter="data")
                got = fresh / member.name
                if got.stat().st_size != entry["size"] or _sha256(got) != entry["sha256"]:
                    raise PackError(f"{archive}: {member.name} does not match its checksum; "
                                    "the archive is damaged: copy or pack it again")  # fmt: skip
                seen.add(member.name)
        missing = sorted(set(files) - seen)
        if missing:
            raise PackError(f"{archive}: {len(missing)} file(s) of the manifest are missing "
                            f"({missing[0]}, ...); copy or pack it again")  # fmt: skip
    except (OSError, tarfile.TarError) as exc:
        shutil.rmtree(fresh, ignore_errors=True)
        raise PackError(f"{archive}: cannot be unpacked ({exc}); copy or pack it again") from None
    except PackError:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    (fresh / ".archive-sha256").write_text(digest + "\n")
    if dest.exists():
        shutil.rmtree(dest)
    fresh.rename(dest)
    log(f"    {len(files)} files checked and unpacked into {dest}")
    return Unpacked(dest, manifest)


# --- The offline package cache ------------------------------------------------------


def offline_cache_pidfile(mission_name: str) -> Path:
    return mission_state_dir(mission_name) / "apt-cacher-ng" / "pid"


def start_offline_cache(unpacked: Unpacked, log: Log, port: int = OFFLINE_PORT) -> None:
    """apt-cacher-ng in offline mode on the pack's cache: serves what is there, fetches nothing."""
    name = unpacked.manifest["mission"]
    run = offline_cache_pidfile(name).parent
    stop_offline_cache(name)
    if drone_image.cache_answers(port=port):
        raise PackError(
            f"port {port} is taken by another program; the offline package cache needs it "
            "(stop it, or take the other mission down)"
        )
    binary = shutil.which("apt-cacher-ng") or "/usr/sbin/apt-cacher-ng"
    if not Path(binary).exists() or not ACNG_CONFIG.is_dir():
        raise PackError("apt-cacher-ng is not installed on the controller: apt-get install "
                        "apt-cacher-ng (scripts/setup.sh does)")  # fmt: skip
    run.mkdir(mode=0o700, parents=True, exist_ok=True)
    proc = subprocess.run(
        [binary, "-c", str(ACNG_CONFIG), "ForeGround=0", f"Port={port}",
         f"CacheDir={unpacked.apt_cache}", f"LogDir={run}", f"pidfile={run / 'pid'}",
         f"SocketPath={run / 'socket'}", "Offlinemode=1", "ExThreshold=0"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not drone_image.cache_answers(port=port):
        if time.monotonic() > deadline:
            raise PackError(f"the offline package cache did not start (exit {proc.returncode}): "
                            f"{proc.stderr.strip()}; its log is in {run}")  # fmt: skip
        time.sleep(0.1)
    log(f"    offline package cache on port {port} (apt-cacher-ng, log {run})")


def stop_offline_cache(mission_name: str) -> bool:
    pidfile = offline_cache_pidfile(mission_name)
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pidfile.unlink(missing_ok=True)
        return False
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    pidfile.unlink(missing_ok=True)
    return True


def controller_address_towards(address: ipaddress.IPv4Address) -> str:
    """The controller's own address on its route to a drone (what the drone reaches it by)."""
    proc = subprocess.run(["ip", "-j", "route", "get", str(address)], capture_output=True,
                          text=True, check=False)  # fmt: skip
    try:
        return json.loads(proc.stdout)[0]["prefsrc"]
    except (ValueError, IndexError, KeyError):
        raise PackError(
            f"no route from the controller to {address}: {proc.stderr.strip()}"
        ) from None
