"""The drone wheelhouse: the drone's own wheel, exact pins, bundles that change only with them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tarfile
import zipfile

import pytest
from packaging.utils import canonicalize_name

from cloudrone.wheelhouse import (
    CONTROLLER_LOCK,
    DRONE_LOCK,
    Target,
    WheelhouseError,
    build_project_wheel,
    download_dependencies,
    drone_dependencies,
    read_pins,
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


def test_the_pi2_target_asks_for_the_tags_piwheels_builds():
    flags = Target.parse("cp311-armv7l").pip_flags()
    # piwheels publishes armv7l wheels with the plain linux tag
    assert "linux_armv7l" in flags and "manylinux2014_armv7l" in flags


def test_drone_pins_are_exact_and_the_ones_the_controller_tests():
    drone = read_pins(ROOT / DRONE_LOCK)
    controller = read_pins(ROOT / CONTROLLER_LOCK)
    for name, version in drone.items():
        assert controller.get(name) == version, f"{name}: drone {version}, controller lock differs"
    # every dependency the drone's project declares is pinned, within its range
    for req in drone_dependencies(ROOT):
        assert req.specifier.contains(drone[canonicalize_name(req.name)]), req
    reqs = runtime_requirements(ROOT)
    assert len(reqs) == len(drone) >= 4
    # the controller's tools never go to a drone
    assert not any(r.lower().startswith(("ansible", "molecule", "docker", "typer")) for r in reqs)


def test_a_lock_line_that_is_not_an_exact_pin_is_refused(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text("pyyaml>=6\n")
    with pytest.raises(WheelhouseError, match="not an exact pin"):
        read_pins(lock)


@pytest.fixture(scope="module")
def drone_wheel(tmp_path_factory):
    wheel, _ = build_project_wheel(ROOT, tmp_path_factory.mktemp("wheel"))
    return wheel


def test_drone_wheel_is_reproducible(drone_wheel, tmp_path):
    first, changed = build_project_wheel(ROOT, tmp_path)
    assert changed
    again, changed_again = build_project_wheel(ROOT, tmp_path)
    assert again == first and not changed_again
    assert first.read_bytes() == drone_wheel.read_bytes()


def test_drone_wheel_holds_drone_code_only_and_it_imports_nothing_else(drone_wheel):
    with zipfile.ZipFile(drone_wheel) as whl:
        modules = {
            n.removesuffix(".py").replace("/", "."): whl.read(n)
            for n in whl.namelist()
            if n.endswith(".py")
        }
        entry_points = whl.read(next(n for n in whl.namelist() if n.endswith("entry_points.txt")))
    names = {m.removesuffix(".__init__") for m in modules}
    assert {"cloudrone.olsr.daemon", "cloudrone.flight.bridge", "cloudrone.sdnotify"} <= names
    for controller_side in ("cloudrone.cli", "cloudrone.mission", "cloudrone.fleet",
                            "cloudrone.runner", "cloudrone.bench", "cloudrone.flight.ground",
                            "cloudrone.wheelhouse", "cloudrone.paths"):  # fmt: skip
        assert not any(n == controller_side or n.startswith(controller_side + ".") for n in names)
    assert b"cloudrone_cli" not in entry_points
    # what the drone's modules import: themselves, the standard library, their pins
    allowed = {canonicalize_name(n) for n in read_pins(ROOT / DRONE_LOCK)} | {"yaml"}
    for module, source in modules.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                top = target.split(".")[0]
                if top == "cloudrone":
                    assert target in names or target.rsplit(".", 1)[0] in names, (
                        f"{module} imports {target}, which the drone's wheel does not hold"
                    )
                else:
                    assert top in sys.stdlib_module_names or canonicalize_name(top) in allowed, (
                        f"{module} imports {target}: not a drone dependency"
                    )


def test_a_changed_pin_leaves_no_wheel_of_the_old_one(tmp_path, monkeypatch):
    import cloudrone.wheelhouse as wh

    target = Target.native()
    folder = tmp_path / str(target)
    folder.mkdir()
    (folder / "pyyaml-5.0-py3-none-any.whl").write_bytes(b"old pin")
    (folder / ".requirements").write_text("pyyaml==5.0\n")

    def fake_download(cmd, **_kwargs):
        dest = cmd[cmd.index("--dest") + 1]
        for req in cmd[cmd.index("--no-deps") + 1 :]:
            if "==" in req:
                name, version = req.split("==")
                (tmp_path / dest / f"{name}-{version}-py3-none-any.whl").write_bytes(b"new")

        class Done:
            returncode = 0
            stderr = ""

        return Done()

    monkeypatch.setattr(wh.subprocess, "run", fake_download)
    assert download_dependencies(ROOT, tmp_path, target)
    wheels = sorted(p.name for p in folder.glob("*.whl"))
    assert "pyyaml-5.0-py3-none-any.whl" not in wheels
    assert len(wheels) == len(runtime_requirements(ROOT))
    assert not download_dependencies(ROOT, tmp_path, target)  # same pins: nothing to do


def test_bundle_is_byte_identical_for_the_same_wheels_and_carries_its_pins(tmp_path):
    deps = tmp_path / "cp311-x86_64"
    deps.mkdir()
    (deps / "b-1.0-py3-none-any.whl").write_bytes(b"b" * 100)
    (deps / "a-1.0-py3-none-any.whl").write_bytes(b"a" * 100)
    wheel = tmp_path / "cloudrone_drone-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"c" * 100)
    bundle = tmp_path / "bundle.tar"
    pins = "a==1.0\nb==1.0\n"
    assert write_bundle(wheel, deps, bundle, pins)
    first = bundle.read_bytes()
    (deps / "a-1.0-py3-none-any.whl").touch()  # a newer mtime alone changes nothing
    assert not write_bundle(wheel, deps, bundle, pins)
    assert bundle.read_bytes() == first
    with tarfile.open(bundle) as tar:
        assert tar.getnames() == [
            wheel.name, "a-1.0-py3-none-any.whl", "b-1.0-py3-none-any.whl", "requirements.txt"
        ]  # fmt: skip
        assert {m.mtime for m in tar.getmembers()} == {0}
        assert tar.extractfile("requirements.txt").read().decode() == pins
    (deps / "b-1.0-py3-none-any.whl").write_bytes(b"B" * 100)
    assert write_bundle(wheel, deps, bundle, pins)
    assert not write_bundle(wheel, deps, bundle, pins)
    assert write_bundle(wheel, deps, bundle, "a==1.0\nb==2.0\n")  # new pins, new bundle


def test_builds_at_once_of_one_wheelhouse_all_succeed_and_agree(tmp_path):
    """A provision and a mission pack may build the same wheelhouse at the same time."""
    target = Target.native()
    deps = tmp_path / str(target)
    deps.mkdir()
    (deps / "a-1.0-py3-none-any.whl").write_bytes(b"a" * 100)
    # the pins already fetched: no download, only the wheel and the bundle are built
    (deps / ".requirements").write_text("\n".join(runtime_requirements(ROOT)) + "\n")
    cmd = [sys.executable, "-m", "cloudrone.wheelhouse", "--dest", str(tmp_path), "--json"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]  # fmt: skip
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert sum(r["changed"] for r in results) == 1  # the first built, the others found it
    assert len({r["bundles"][str(target)]["sha256"] for r in results}) == 1
    files = {p.name for p in tmp_path.iterdir() if p.is_file()}
    assert files == {
        ".lock",
        ".wheel-inputs",
        results[0]["wheel"],
        f"cloudrone-bundle-{target}.tar",
    }


def test_the_wheel_is_built_again_only_when_a_drone_source_changes(tmp_path, monkeypatch):
    import shutil

    import cloudrone.wheelhouse as wh

    # a copy of the source tree the wheel is built from
    root = tmp_path / "src"
    shutil.copytree(ROOT / "drone", root / "drone")
    shutil.copytree(ROOT / "cloudrone", root / "cloudrone",
                    ignore=shutil.ignore_patterns("__pycache__", "node_modules"))  # fmt: skip
    dest = tmp_path / "wheelhouse"
    first, changed = build_project_wheel(root, dest)
    assert changed

    # unchanged sources: no pip at all
    def no_pip(*_args, **_kwargs):
        raise AssertionError("pip was asked to build a wheel whose sources did not change")

    with monkeypatch.context() as m:
        m.setattr(wh.subprocess, "run", no_pip)
        assert build_project_wheel(root, dest) == (first, False)
        # a controller-only module is not in the wheel: still nothing to build
        (root / "cloudrone" / "cli.py").write_text("# changed\n")
        assert build_project_wheel(root, dest) == (first, False)

    before = first.read_bytes()
    daemon = root / "cloudrone" / "olsr" / "daemon.py"
    daemon.write_text(daemon.read_text() + "\n# a change the drones must get\n")
    again, changed = build_project_wheel(root, dest)
    assert changed and again.read_bytes() != before
    with zipfile.ZipFile(again) as wheel:
        assert b"a change the drones must get" in wheel.read("cloudrone/olsr/daemon.py")
