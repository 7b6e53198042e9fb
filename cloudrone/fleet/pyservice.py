"""Service images the controller builds in Python: the camp board.

An image is the ``python`` base (images/python: the smallest Debian with
python3, built with debootstrap), the service's one module from this project,
and its PyPI packages installed from wheels at the exact versions of
``requirements/controller.lock``, the versions the tests run. The wheels are
fetched once into ``.cache/pyservice/<target>`` (``scripts/setup.sh`` does it
for this machine); building reads only that folder, so it needs no network.
The tag is a hash of everything that goes in: unchanged inputs reuse the image.

    python -m cloudrone.fleet.pyservice fetch      # the wheels (setup does this)
    python -m cloudrone.fleet.pyservice ensure board [--save FILE]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cloudrone.fleet import image as debian_image
from cloudrone.fleet import tinyweb
from cloudrone.fleet.sim import FleetError
from cloudrone.paths import project_root
from cloudrone.wheelhouse import CONTROLLER_LOCK, Target, read_pins

WHEELS = Path(".cache") / "pyservice"
HOME = "/opt/cloudrone"


@dataclass(frozen=True)
class Service:
    name: str
    module: str  # the file under the project that is the service
    packages: tuple[str, ...]  # what it imports from PyPI, with their dependencies
    port: int
    data: str | None = None  # a folder kept across restarts (a volume)


SERVICES = {
    "board": Service(
        name="board",
        module="cloudrone/camp/board.py",
        packages=("pycrdt", "anyio", "idna", "typing-extensions"),
        port=8080,
        data="/data",
    ),
}


def pins(service: Service, root: Path) -> list[str]:
    locked = read_pins(root / CONTROLLER_LOCK)
    missing = [p for p in service.packages if p not in locked]
    if missing:
        raise FleetError(f"{', '.join(missing)} not pinned in {CONTROLLER_LOCK}")
    return [f"{p}=={locked[p]}" for p in service.packages]


def fetch(root: Path | None = None, target: Target | None = None, log=print) -> Path:
    """The wheels of every service's pins for ``target``, downloaded when missing."""
    root = root or project_root()
    target = target or Target.native()
    folder = root / WHEELS / str(target)
    wanted = sorted({pin for s in SERVICES.values() for pin in pins(s, root)})
    stamp = folder / ".pins"
    if stamp.is_file() and stamp.read_text().split() == wanted:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    log(f"    pip download {' '.join(wanted)} for {target}")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps",
         "--dest", str(folder), *target.pip_flags(), *wanted],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise FleetError(f"downloading the services' wheels for {target} failed:\n{proc.stderr}")
    stamp.write_text("\n".join(wanted) + "\n")
    return folder


def _context(service: Service, base: str, root: Path) -> tuple[str, io.BytesIO]:
    """(tag, build context): the service's module, its installed packages, a Dockerfile."""
    folder = root / WHEELS / str(Target.native())
    wanted = pins(service, root)
    stamp = folder / ".pins"
    if not stamp.is_file() or not set(wanted) <= set(stamp.read_text().split()):
        raise FleetError(
            f"the wheels for {service.name} are not in {folder}: run scripts/setup.sh "
            "(or python -m cloudrone.fleet.pyservice fetch) once with PyPI in reach"
        )
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
             "--no-compile", "--find-links", str(folder), "--target", str(site), *wanted],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise FleetError(f"installing {service.name}'s packages failed:\n{proc.stderr}")
        files = [
            (f"site/{p.relative_to(site)}", p.read_bytes(), 0o644)
            for p in sorted(site.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and ".dist-info" not in str(p)
        ]
    module = Path(service.module).name
    files.append((module, (root / service.module).read_bytes(), 0o644))
    lines = [
        f"FROM {base}",
        f"COPY site/ {HOME}/site/",
        f"COPY {module} {HOME}/{module}",
    ]
    env = [f"PYTHONPATH={HOME}/site", f"{service.name.upper()}_PORT={service.port}"]
    if service.data:
        # the volume takes the folder's owner the first time it is mounted
        lines.append(f"COPY --chown=65534:65534 data/ {service.data}/")
        env.append(f"{service.name.upper()}_DATA={service.data}")
    lines += [
        f"ENV {' '.join(env)}",
        "USER 65534:65534",
        f"EXPOSE {service.port}",
        *([f"VOLUME {service.data}"] if service.data else []),
        f'ENTRYPOINT ["python3", "{HOME}/{module}"]',
    ]
    files.insert(0, ("Dockerfile", ("\n".join(lines) + "\n").encode(), 0o644))
    tag = tinyweb.tag_for(files, repository=f"cloudrone/{service.name}")
    return tag, tinyweb.build_context(files, folders=("data",) if service.data else ())


def ensure(name: str, log=print, root: Path | None = None) -> str:
    """The service image's tag, built when its inputs changed (or it is missing)."""
    root = root or project_root()
    service = SERVICES[name]
    try:
        base = debian_image.ensure(name="python", log=log)
    except (RuntimeError, subprocess.CalledProcessError, ValueError) as exc:
        raise FleetError(f"the python base image: {exc}") from None
    tag, context = _context(service, base, root)
    tinyweb.build_once(tag, context, log)
    return tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudrone.fleet.pyservice")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("fetch", help="download the services' wheels for this machine")
    build = sub.add_parser("ensure", help="build a service's image")
    build.add_argument("service", choices=sorted(SERVICES))
    build.add_argument("--save", type=Path, help="also write a docker save archive here")
    args = parser.parse_args(argv)
    try:
        if args.action == "fetch":
            print(fetch())
            return 0
        tag = ensure(args.service)
        if args.save:
            tinyweb.save(tag, args.save)
        print(tag)
    except FleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
