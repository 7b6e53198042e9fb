"""The drone wheelhouse: everything a drone installs with pip, built on the controller.

Drones have no Internet. The controller builds the ``cloudrone`` wheel from
this checkout and downloads binary wheels of its runtime dependencies, pinned
by ``requirements/controller.lock``, once per drone target (Python version and
machine, e.g. ``cp311-x86_64`` or ``cp311-aarch64``). The base role copies a
target's folder to the drone and installs from it with ``--no-index``.

Building is idempotent: an unchanged tree reports ``changed: false`` (hatchling
builds reproducible wheels), and a target already downloaded for the same pins
is not downloaded again, so the controller can work offline once it has them.

    python -m cloudrone.wheelhouse --dest build/wheelhouse --target cp311-x86_64 --json
"""

from __future__ import annotations

import argparse
import hashlib
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

from cloudrone.paths import project_root

TARGET_RE = re.compile(r"^cp(?P<major>\d)(?P<minor>\d{1,2})-(?P<machine>[a-z0-9_]+)$")
# manylinux tags old enough for Debian 12 / Ubuntu 22.04 and newer (glibc >= 2.35).
MANYLINUX = ("manylinux_2_28", "manylinux_2_17", "manylinux2014", "linux")


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


def runtime_requirements(root: Path) -> list[str]:
    """The drone's dependencies, pinned to the versions in the controller lock."""
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    pins: dict[str, str] = {}
    for line in (root / "requirements" / "controller.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[_norm(name)] = version.strip()
    reqs = []
    for dep in meta["dependencies"]:
        name = re.split(r"[<>=!~ \[;]", dep, maxsplit=1)[0]
        version = pins.get(_norm(name))
        reqs.append(f"{name}=={version}" if version else dep)
    return reqs


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_project_wheel(root: Path, dest: Path) -> tuple[Path, bool]:
    """Build cloudrone's wheel into ``dest``; replace the old one only if it differs."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--quiet",
                "--wheel-dir",
                tmp,
                str(root),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise WheelhouseError(f"building the cloudrone wheel failed:\n{proc.stderr}")
        (built,) = Path(tmp).glob("cloudrone-*.whl")
        target = dest / built.name
        if target.exists() and _sha256(target) == _sha256(built):
            return target, False
        for old in dest.glob("cloudrone-*.whl"):
            old.unlink()
        shutil.copy2(built, target)
        return target, True


def download_dependencies(root: Path, dest: Path, target: Target) -> bool:
    """Fill ``dest/<target>`` with wheels of the pinned runtime dependencies."""
    reqs = runtime_requirements(root)
    folder = dest / str(target)
    stamp = folder / ".requirements"
    wanted = "\n".join(reqs) + "\n"
    if stamp.is_file() and stamp.read_text() == wanted:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--only-binary=:all:",
        "--dest",
        str(folder),
        "--constraint",
        str(root / "requirements" / "controller.lock"),
        *target.pip_flags(),
        *reqs,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise WheelhouseError(
            f"downloading wheels for {target} failed (the controller needs PyPI once per "
            f"target; for 32-bit Pis add piwheels with PIP_EXTRA_INDEX_URL):\n{proc.stderr}"
        )
    stamp.write_text(wanted)
    return True


def write_bundle(wheel: Path, deps: Path, bundle: Path) -> bool:
    """One tar of the cloudrone wheel and a target's dependency wheels.

    Byte-for-byte reproducible (sorted names, fixed times and owners), so an
    unchanged wheelhouse gives an unchanged bundle and a drone copies nothing.
    """
    files = [wheel, *sorted(deps.glob("*.whl"))]
    tmp = bundle.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for f in files:
            info = tarfile.TarInfo(f.name)
            info.size = f.stat().st_size
            info.mode = 0o644
            info.mtime = 0
            with f.open("rb") as fh:
                tar.addfile(info, fh)
    if bundle.exists() and _sha256(bundle) == _sha256(tmp):
        tmp.unlink()
        return False
    tmp.replace(bundle)
    return True


def build(dest: Path, targets: list[Target], root: Path | None = None) -> dict:
    root = root or project_root()
    wheel, changed = build_project_wheel(root, dest)
    bundles = {}
    for target in targets:
        changed |= download_dependencies(root, dest, target)
        bundle = dest / f"cloudrone-bundle-{target}.tar"
        changed |= write_bundle(wheel, dest / str(target), bundle)
        bundles[str(target)] = {"path": str(bundle), "sha256": _sha256(bundle)}
    return {
        "changed": changed,
        "wheel": wheel.name,
        "version": wheel.name.split("-")[1],
        "bundles": bundles,
    }


def main(argv: list[str] | None = None) -> int:
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
