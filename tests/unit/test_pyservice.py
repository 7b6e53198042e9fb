"""Service images built in Python: the python base recipe, the board's context, bad inputs."""

from __future__ import annotations

import dataclasses
import tarfile

import pytest

from cloudrone.fleet import pyservice
from cloudrone.fleet.image import IMAGE_REPO, Recipe
from cloudrone.fleet.sim import FleetError
from tests.conftest import ROOT


def test_the_python_base_is_its_own_recipe_and_the_drones_is_unchanged():
    python = Recipe.load(ROOT / "images" / "python")
    assert python.tag.startswith("cloudrone/python:bookworm-")
    assert 'CMD ["/usr/bin/python3"]' in python.changes and "systemd" not in python.include
    drone = Recipe.load()
    assert drone.tag.startswith(f"{IMAGE_REPO}:bookworm-")
    assert drone.changes == ('CMD ["/sbin/init"]', "ENV container=docker")


def test_the_boards_packages_are_the_versions_the_controller_tests():
    pins = pyservice.pins(pyservice.SERVICES["board"], ROOT)
    assert "pycrdt==0.14.10" in pins and any(p.startswith("anyio==") for p in pins)
    unpinned = dataclasses.replace(pyservice.SERVICES["board"], packages=("left-pad",))
    with pytest.raises(FleetError, match=r"left-pad not pinned in requirements/controller\.lock"):
        pyservice.pins(unpinned, ROOT)


def test_the_board_image_is_its_module_its_wheels_and_a_volume_nobody_owns():
    board = pyservice.SERVICES["board"]
    tag, context = pyservice._context(board, "cloudrone/python:test", ROOT)
    again, _ = pyservice._context(board, "cloudrone/python:test", ROOT)
    assert tag == again and tag.startswith("cloudrone/board:")  # same inputs, same tag
    with tarfile.open(fileobj=context) as tar:
        names = tar.getnames()
        dockerfile = tar.extractfile("Dockerfile").read().decode()
        module = tar.extractfile("board.py").read()
    assert module == (ROOT / "cloudrone/camp/board.py").read_bytes()
    assert any(n.startswith("site/pycrdt/") and n.endswith(".so") for n in names), names
    assert "data" in names and not any("__pycache__" in n for n in names)
    assert "FROM cloudrone/python:test" in dockerfile and "USER 65534:65534" in dockerfile
    assert "COPY --chown=65534:65534 data/ /data/" in dockerfile and "VOLUME /data" in dockerfile
    other, _ = pyservice._context(board, "cloudrone/python:other", ROOT)
    assert other != tag  # another base, another image


def test_without_the_wheels_the_build_says_how_to_get_them(tmp_path):
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "controller.lock").write_text(
        (ROOT / "requirements" / "controller.lock").read_text()
    )
    with pytest.raises(FleetError, match=r"run scripts/setup\.sh"):
        pyservice._context(pyservice.SERVICES["board"], "base", tmp_path)
    assert not list(tmp_path.rglob("*.whl"))
