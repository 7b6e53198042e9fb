"""The drone wheelhouse: everything a drone installs with pip, built on the controller.

Drones have no Internet. The controller builds the drone's own wheel
(``cloudrone-drone``, from ``drone/pyproject.toml``: the routing daemon, the
flight bridge and what they share, nothing of the controller) and downloads
binary wheels of exactly the versions pinned in ``requirements/drone.lock``,
once per drone target (Python version and machine, e.g. ``cp311-x86_64``,
``cp313-aarch64``). A target's bundle is one tar of those wheels and the
pins themselves (``requirements.txt``); the base role installs it with
``--no-index``.

Building is idempotent: an unchanged tree reports ``changed: false`` (hatchling
builds reproducible wheels), and a target already downloaded for the same pins
is not downloaded again, so the controller can work offline once it has them.
A changed pin replaces the target's wheels as a whole: no wheel of an older
pin is left to travel.

    python -m cloudrone.wheelhouse --dest build/wheelhouse --target cp311-x86_64 --json
    python -m cloudrone.wheelhouse lock     # rewrite requirements/drone.lock

32-bit Pis (armv7l, the Raspberry Pi 2): PyPI has no armv7l wheels for some
dependencies (pymavlink, lxml, fastcrc); piwheels builds them for Raspberry
Pi OS. Set ``PIP_EXTRA_INDEX_URL=https://www.piwheels.org/simple`` for the
controller's download of that target.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import io
import json
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cloudrone.paths import project_root

TARGET_RE = re.compile(r"^cp(?P<major>\d)(?P<minor>\d{1,2})-(?P<machine>[a-z0-9_]+)$")
# manylinux tags old enough for Debian 12 / Ubuntu 22.04 and newer (glibc >= 2.35).
# "linux" is the plain platform tag of piwheels' armv7l builds.
MANYLINUX = ("manylinux_2_28", "manylinux_2_17", "manylinux2014", "linux")
DRONE_PROJECT = "drone"
DRONE_LOCK = "requirements/drone.lock"
CONTROLLER_LOCK = "requirements/controller.lock"
PINS_NAME = "requirements.txt"


class WheelhouseError(RuntimeError):
    pass


@dataclass(frozen=True)
class Target:
    major: int
    minor: int
    machine: str

    @classmethod
    def parse(cls, text: str) -> Target:
        m = TARGET_RE.match(text)
        if not m:
            raise WheelhouseError(
                f"target {text!r}: expected cpXY-MACHINE, for example cp311-x86_64 or cp311-aarch64"
            )
        return cls(int(m["major"]), int(m["minor"]), m["machine"])

    @classmethod
    def native(cls) -> Target:
        return cls(sys.version_info.major, sys.version_info.minor, platform.machine())

    def __str__(self) -> str:
        return f"cp{self.major}{self.minor}-{self.machine}"

    def pip_flags(self) -> list[str]:
        """pip download flags that pick wheels for this target from another machine."""
        if self == Target.native():
            return []
        flags = [
            "--python-version",
            f"{self.major}.{self.minor}",
            "--implementation",
            "cp",
            "--abi",
            f"cp{self.major}{self.minor}",
        ]
        for tag in MANYLINUX:
            flags += ["--platform", f"{tag}_{self.machine}"]
        return flags


def drone_dependencies(root: Path) -> list[Requirement]:
    """What the drone's own project asks for (drone/pyproject.toml)."""
    meta = tomllib.loads((root / DRONE_PROJECT / "pyproject.toml").read_text())["project"]
    return [Requirement(dep) for dep in meta["dependencies"]]


def read_pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a lock file, by canonical name."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        if spec.operator != "==":
            raise WheelhouseError(f"{path}: {line!r} is not an exact pin (name==version)")
        pins[canonicalize_name(req.name)] = spec.version
    return pins


def runtime_requirements(root: Path) -> list[str]:
    """The drone's pins, exactly as requirements/drone.lock has them (its deps' deps too)."""
    lock = root / DRONE_LOCK
    if not lock.is_file():
        raise WheelhouseError(
            f"{lock} is missing; write it with: python -m cloudrone.wheelhouse lock"
        )
    return [f"{name}=={version}" for name, version in read_pins(lock).items()]


def resolve_lock(root: Path) -> str:
    """The text of requirements/drone.lock: the drone's dependencies, resolved
    under the controller's pins.

    The controller tests and benchmarks the drone's code with its own lock, so
    the drone flies exactly the versions the suite proved.
    """
    deps = [str(r) for r in drone_dependencies(root)]
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--only-binary=:all:", "--report", "-", "--constraint", str(root / CONTROLLER_LOCK),
         *deps],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise WheelhouseError(f"resolving the drone's dependencies failed:\n{proc.stderr}")
    report = json.loads(proc.stdout)
    pins = sorted((i["metadata"]["name"], i["metadata"]["version"]) for i in report["install"])
    lines = [f"{name}=={version}" for name, version in sorted(pins, key=lambda p: p[0].lower())]
    return (
        "# What a drone installs, exactly: drone/pyproject.toml's dependencies resolved\n"
        "# under requirements/controller.lock. Rewrite: python -m cloudrone.wheelhouse lock\n"
        + "\n".join(lines)
        + "\n"
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wheel_inputs(root: Path) -> str:
    """A digest of everything the drone's wheel is built from: its pyproject and
    every file it force-includes (the drone's modules of this source tree)."""
    project = root / DRONE_PROJECT
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    sources = meta["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    digest = hashlib.sha256((project / "pyproject.toml").read_bytes())
    for source, inside in sorted(sources.items()):
        path = (project / source).resolve()
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts:
                name = f"{inside}/{f.relative_to(path)}" if path.is_dir() else inside
                digest.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


def build_project_wheel(root: Path, dest: Path) -> tuple[Path, bool]:
    """Build the drone's wheel into ``dest``; replace the old one only if it differs.

    A wheel built from the same inputs (``wheel_inputs``) is not built again:
    pip takes most of a second, and every provisioning run asks.
    """
    dest.mkdir(parents=True, exist_ok=True)
    inputs = wheel_inputs(root)
    stamp = dest / ".wheel-inputs"
    built_before = list(dest.glob("cloudrone_drone-*.whl"))
    if len(built_before) == 1 and stamp.is_file() and stamp.read_text() == inputs:
        return built_before[0], False
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "--quiet", "--wheel-dir", tmp, str(root / DRONE_PROJECT)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise WheelhouseError(f"building the drone's wheel failed:\n{proc.stderr}")
        (built,) = Path(tmp).glob("cloudrone_drone-*.whl")
        target = dest / built.name
        if target.exists() and _sha256(target) == _sha256(built):
            stamp.write_text(inputs)
            return target, False
        for old in dest.glob("cloudrone_drone-*.whl"):
            old.unlink()
        shutil.copy2(built, target)
        stamp.write_text(inputs)
        return target, True


def download_dependencies(root: Path, dest: Path, target: Target) -> bool:
    """Make ``dest/<target>`` hold the wheels of exactly the drone's pins, and nothing else."""
    reqs = runtime_requirements(root)
    folder = dest / str(target)
    stamp = folder / ".requirements"
    wanted = "\n".join(reqs) + "\n"
    if stamp.is_file() and stamp.read_text() == wanted:
        return False
    dest.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{target}-", dir=dest))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
         "--no-deps", "--dest", str(fresh), *target.pip_flags(), *reqs],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        shutil.rmtree(fresh)
        hint = (
            " PyPI has no armv7l wheels for some of them: add piwheels for this download "
            "(PIP_EXTRA_INDEX_URL=https://www.piwheels.org/simple)."
            if target.machine.startswith("armv7")
            else ""
        )
        raise WheelhouseError(
            f"downloading wheels for {target} failed (the controller needs PyPI once per "
            f"target).{hint}\n{proc.stderr}"
        )
    (fresh / ".requirements").write_text(wanted)
    # one swap: the old pins' wheels go with the old folder
    if folder.exists():
        shutil.rmtree(folder)
    fresh.rename(folder)
    return True


def write_bundle(wheel: Path, deps: Path, bundle: Path, pins: str) -> bool:
    """One tar of the drone's wheel, a target's dependency wheels, and the pins.

    Byte-for-byte reproducible (sorted names, fixed times and owners), so an
    unchanged wheelhouse gives an unchanged bundle and a drone copies nothing.
    """
    tmp = bundle.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        members = [(f.name, f.read_bytes()) for f in [wheel, *sorted(deps.glob("*.whl"))]]
        members.append((PINS_NAME, pins.encode()))
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    if bundle.exists() and _sha256(bundle) == _sha256(tmp):
        tmp.unlink()
        return False
    tmp.replace(bundle)
    return True


def build(dest: Path, targets: list[Target], root: Path | None = None) -> dict:
    """Build under an exclusive lock on ``dest``: two builds at once (a provision
    and a mission pack, say) would otherwise swap files under each other."""
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build(dest, targets, root or project_root())


def _build(dest: Path, targets: list[Target], root: Path) -> dict:
    wheel, changed = build_project_wheel(root, dest)
    pins = "\n".join(runtime_requirements(root)) + "\n"  # the same for every target
    bundles = {}
    for target in targets:
        changed |= download_dependencies(root, dest, target)
        bundle = dest / f"cloudrone-bundle-{target}.tar"
        changed |= write_bundle(wheel, dest / str(target), bundle, pins)
        bundles[str(target)] = {"path": str(bundle), "sha256": _sha256(bundle)}
    return {
        "changed": changed,
        "wheel": wheel.name,
        "version": wheel.name.split("-")[1],
        "bundles": bundles,
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lock"]:
        root = project_root()
        try:
            (root / DRONE_LOCK).write_text(resolve_lock(root))
        except WheelhouseError as exc:
            print(f"wheelhouse: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {DRONE_LOCK}")
        return 0
    parser = argparse.ArgumentParser(prog="python -m cloudrone.wheelhouse")
    parser.add_argument("--dest", type=Path, required=True)
    parser.add_argument("--target", action="append", default=[], help="cpXY-MACHINE")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        targets = [Target.parse(t) for t in args.target] or [Target.native()]
        result = build(args.dest.resolve(), targets)
    except WheelhouseError as exc:
        print(f"wheelhouse: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        state = "built" if result["changed"] else "up to date"
        print(f"{result['wheel']} ({state}); bundles: {', '.join(result['bundles'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
