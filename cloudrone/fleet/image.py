"""Images built from Debian with debootstrap: the simulated drone, the services' Python.

A recipe is a folder under ``images/`` (``recipe.yml`` and ``customize.sh``):
``drone`` is a stock Debian root file system as a flashed Pi has it; ``python``
is the smallest Debian with python3, the base of the services the controller
builds in Python (cloudrone.fleet.pyservice). The recipe is hashed into the
image tag, so an unchanged recipe reuses the image already in the engine and a
changed one builds anew.
Packages come through the controller's apt-cacher-ng when it answers, the same
cache the simulated drones use.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import yaml

from cloudrone.fleet.sim import engine_client
from cloudrone.paths import project_root

IMAGE_REPO = "cloudrone/drone"
RECIPES = ("drone", "python")
# how `docker import` finishes the drone's image; a recipe may say otherwise
DRONE_CHANGES = ('CMD ["/sbin/init"]', "ENV container=docker")
CACHE_PORT = 3142


def all_suites(data: dict) -> list[str]:
    """The recipe's release first, then the others it also builds."""
    return [str(data["suite"]), *(str(s) for s in data.get("other_suites") or [])]


@dataclass(frozen=True)
class Recipe:
    folder: Path
    suite: str
    mirror: str
    variant: str
    include: tuple[str, ...]
    repository: str = IMAGE_REPO
    changes: tuple[str, ...] = DRONE_CHANGES

    @classmethod
    def load(cls, folder: Path | None = None, suite: str | None = None) -> Recipe:
        """The recipe; ``suite`` builds the same image on another Debian release."""
        folder = folder or project_root() / "images" / "drone"
        path = folder / "recipe.yml"
        data = yaml.safe_load(path.read_text())
        missing = {"suite", "mirror", "variant", "include"} - set(data or {})
        if missing:
            raise ValueError(f"{path}: missing {', '.join(sorted(missing))}")
        suites = all_suites(data)
        if suite is not None and suite not in suites:
            raise ValueError(f"{path}: suite {suite!r} is not one of {', '.join(suites)}")
        return cls(
            folder=folder,
            suite=suite or suites[0],
            mirror=str(data["mirror"]).rstrip("/"),
            variant=str(data["variant"]),
            include=tuple(str(p) for p in data["include"]),
            repository=str(data.get("repository", IMAGE_REPO)),
            changes=tuple(str(c) for c in data.get("changes", DRONE_CHANGES)),
        )

    @functools.cached_property
    def digest(self) -> str:
        """A hash of every file of the recipe (computed once)."""
        h = hashlib.sha256()
        for f in sorted(p for p in self.folder.rglob("*") if p.is_file()):
            h.update(f.relative_to(self.folder).as_posix().encode())
            h.update(b"\0")
            h.update(f.read_bytes())
        return h.hexdigest()[:12]

    @property
    def tag(self) -> str:
        return f"{self.repository}:{self.suite}-{self.digest}"


def cache_answers(host: str = "127.0.0.1", port: int = CACHE_PORT) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def image_exists(tag: str) -> bool:
    try:
        engine_client().images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def mirror_via_cache(mirror: str) -> str:
    """``http://deb.debian.org/debian`` -> the same archive through apt-cacher-ng."""
    if mirror.startswith("http://") and cache_answers():
        return f"http://127.0.0.1:{CACHE_PORT}/{mirror.removeprefix('http://')}"
    return mirror


def build(recipe: Recipe, log=print) -> str:
    engine = engine_client()
    for tool in ("debootstrap", "chroot", "tar"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found; run scripts/setup.sh (it installs it)")
    mirror = mirror_via_cache(recipe.mirror)
    with tempfile.TemporaryDirectory(prefix="cloudrone-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"    debootstrap {recipe.suite} from {mirror} (about a minute)")
        subprocess.run(
            [
                "debootstrap",
                f"--variant={recipe.variant}",
                f"--include={','.join(recipe.include)}",
                recipe.suite,
                str(rootfs),
                mirror,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # Point apt at the real mirror, not at this controller's cache.
        (rootfs / "etc/apt/sources.list").write_text(
            f"deb {recipe.mirror} {recipe.suite} main\n"
            f"deb {recipe.mirror} {recipe.suite}-updates main\n"
        )
        shutil.copy(recipe.folder / "customize.sh", rootfs / "customize.sh")
        proxy = f"http://127.0.0.1:{CACHE_PORT}" if cache_answers() else ""
        subprocess.run(
            [
                "chroot",
                str(rootfs),
                "/usr/bin/env",
                f"CLOUDRONE_APT_PROXY={proxy}",
                "/bin/sh",
                "/customize.sh",
            ],
            check=True,
        )
        (rootfs / "customize.sh").unlink()
        log(f"    docker import as {recipe.tag}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        repository, tag = recipe.tag.split(":")
        engine.api.import_image(
            src=tar.stdout,
            repository=repository,
            tag=tag,
            changes=[*recipe.changes, f"LABEL io.cloudrone.recipe={recipe.digest}"],
            stream_src=True,
        )
        if tar.wait() != 0:
            raise RuntimeError("tar of the root file system failed")
        if not image_exists(recipe.tag):
            raise RuntimeError(f"the engine did not keep the imported image {recipe.tag}")
    return recipe.tag


def ensure(
    recipe: Recipe | None = None, log=print, suite: str | None = None, name: str = "drone"
) -> str:
    """The image's tag, building the image only when it is missing."""
    recipe = recipe or Recipe.load(project_root() / "images" / name, suite=suite)
    if image_exists(recipe.tag):
        log(f"    {recipe.tag} is present (reused)")
        return recipe.tag
    return build(recipe, log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudrone.fleet.image")
    parser.add_argument("action", choices=["ensure", "tag"])
    parser.add_argument("--image", choices=RECIPES, default="drone", help="which recipe")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--suite", help="another Debian release of the recipe (other_suites)")
    which.add_argument("--all-suites", action="store_true", help="every release of the recipe")
    args = parser.parse_args(argv)
    try:
        folder = project_root() / "images" / args.image
        if args.action == "tag":
            print(Recipe.load(folder, suite=args.suite).tag)
            return 0
        if args.all_suites:
            for suite in all_suites(yaml.safe_load((folder / "recipe.yml").read_text())):
                ensure(suite=suite, name=args.image)
        else:
            ensure(suite=args.suite, name=args.image)
    except (RuntimeError, subprocess.CalledProcessError, ValueError) as exc:
        print(f"{args.image} image: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
