"""The tiny service image: a static web server in a couple of MB, built here.

Like the nano-httpd of the Cloudrone paper, it lets tests and the demo run a
real service with no registry and no Internet: ``FROM scratch``, the host's
static busybox (``busybox-static``, which the setup installs) and a page from
``images/tinyweb/``. The tag carries a hash of everything that goes in, so an
unchanged input reuses the image. ``save`` writes it in ``docker save`` format,
the archive a drone loads before takeoff.

    python -m cloudrone.fleet.tinyweb [--save FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tarfile
from pathlib import Path

import docker.errors

from cloudrone.fleet.sim import FleetError, engine_client
from cloudrone.paths import project_root

REPOSITORY = "cloudrone/tinyweb"
BUSYBOX = Path("/bin/busybox")
PORT = 8080
DOCKERFILE = f"""\
FROM scratch
COPY busybox /bin/busybox
COPY www/ /www/
EXPOSE {PORT}
USER 65534:65534
ENTRYPOINT ["/bin/busybox", "httpd", "-f", "-v", "-p", "{PORT}", "-h", "/www"]
"""


def _inputs(busybox: Path, www: Path) -> list[tuple[str, bytes, int]]:
    """(name in the build context, content, mode), in a fixed order."""
    if not busybox.exists():
        raise FleetError(f"{busybox} not found: run scripts/setup.sh (it installs busybox-static)")
    files = [("Dockerfile", DOCKERFILE.encode(), 0o644), ("busybox", busybox.read_bytes(), 0o755)]
    for path in sorted(p for p in www.rglob("*") if p.is_file()):
        files.append((f"www/{path.relative_to(www)}", path.read_bytes(), 0o644))
    return files


def tag_for(files: list[tuple[str, bytes, int]], repository: str = REPOSITORY) -> str:
    """``repository:`` a hash of every input (name, mode, content)."""
    digest = hashlib.sha256()
    for name, content, mode in files:
        digest.update(f"{name}\0{mode}\0{len(content)}\0".encode())
        digest.update(content)
    return f"{repository}:{digest.hexdigest()[:12]}"


def build_context(files: list[tuple[str, bytes, int]], folders: tuple[str, ...] = ()) -> io.BytesIO:
    """A build context: the files, and empty ``folders`` (mode 755)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content, mode in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), mode
            tar.addfile(info, io.BytesIO(content))
        for name in folders:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
    buffer.seek(0)
    return buffer


def build_once(tag: str, context: io.BytesIO, log=print) -> bool:
    """Build ``tag`` from a tar ``context`` unless the engine holds it; True if built.

    The tag is a hash of the inputs, so an image under it is the one they make.
    """
    client = engine_client()
    try:
        client.images.get(tag)
        log(f"    {tag} is present (reused)")
        return False
    except docker.errors.ImageNotFound:
        pass
    try:
        client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True, pull=False)
    except docker.errors.BuildError as exc:
        raise FleetError(f"building {tag} failed: {exc.msg}") from None
    log(f"    built {tag}")
    return True


def ensure(busybox: Path = BUSYBOX, www: Path | None = None, log=print) -> str:
    """The image's tag, built when its inputs changed (or it is missing)."""
    files = _inputs(busybox, www or project_root() / "images" / "tinyweb")
    tag = tag_for(files)
    if build_once(tag, build_context(files), log):
        engine_client().images.get(tag).tag(REPOSITORY, "latest")
    return tag


def save(tag: str, path: Path) -> Path:
    """Write the image as a ``docker save`` archive (what a drone loads)."""
    image = engine_client().images.get(tag)
    with path.open("wb") as out:
        for chunk in image.save(named=True):
            out.write(chunk)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudrone.fleet.tinyweb")
    parser.add_argument("--save", type=Path, help="also write a docker save archive here")
    args = parser.parse_args(argv)
    try:
        tag = ensure()
        if args.save:
            save(tag, args.save)
            print(f"    saved {tag} to {args.save}")
    except FleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
