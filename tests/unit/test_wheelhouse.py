"""The drone wheelhouse: targets, pins, and a bundle that only changes when its wheels do."""

from __future__ import annotations

import tarfile

import pytest

from cloudrone.wheelhouse import (
    Target,
    WheelhouseError,
    build_project_wheel,
    runtime_requirements,
    write_bundle,
)
from tests.conftest import ROOT


def test_target_parsing_and_cross_flags():
    t = Target.parse("cp311-aarch64")
    assert (t.major, t.minor, t.machine) == (3, 11, "aarch64")
    flags = t.pip_flags()
    assert flags[:2] == ["--python-version", "3.11"]
    assert "manylinux2014_aarch64" in flags
    assert Target.native().pip_flags() == []
    with pytest.raises(WheelhouseError, match="expected cpXY-MACHINE"):
        Target.parse("python3-arm")


def test_runtime_requirements_are_pinned_by_the_lock():
    reqs = runtime_requirements(ROOT)
    lock = (ROOT / "requirements" / "controller.lock").read_text()
    assert len(reqs) >= 4
    for req in reqs:
        name, version = req.split("==")
        assert f"{name}=={version}".lower() in lock.lower()
    # the controller's tools never go to a drone
    assert not any(r.lower().startswith(("ansible", "molecule", "docker")) for r in reqs)


def test_project_wheel_is_reproducible(tmp_path):
    first, changed = build_project_wheel(ROOT, tmp_path)
    assert changed
    again, changed_again = build_project_wheel(ROOT, tmp_path)
    assert again == first
    assert not changed_again


def test_bundle_is_byte_identical_for_the_same_wheels(tmp_path):
    deps = tmp_path / "cp311-x86_64"
    deps.mkdir()
    (deps / "b-1.0-py3-none-any.whl").write_bytes(b"b" * 100)
    (deps / "a-1.0-py3-none-any.whl").write_bytes(b"a" * 100)
    wheel = tmp_path / "cloudrone-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"c" * 100)
    bundle = tmp_path / "bundle.tar"
    assert write_bundle(wheel, deps, bundle)
    first = bundle.read_bytes()
    (deps / "a-1.0-py3-none-any.whl").touch()  # a newer mtime alone changes nothing
    assert not write_bundle(wheel, deps, bundle)
    assert bundle.read_bytes() == first
    with tarfile.open(bundle) as tar:
        assert tar.getnames() == [wheel.name, "a-1.0-py3-none-any.whl", "b-1.0-py3-none-any.whl"]
        assert {m.mtime for m in tar.getmembers()} == {0}
    (deps / "b-1.0-py3-none-any.whl").write_bytes(b"B" * 100)
    assert write_bundle(wheel, deps, bundle)
