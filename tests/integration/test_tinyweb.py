"""The tiny service image: built here from nothing, a couple of MB, serving a
page, and carried as a `docker save` archive that loads back as the same image."""

from __future__ import annotations

import urllib.request

import docker
import pytest

from cloudrone.bench.lab import wait_until
from cloudrone.fleet import tinyweb

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def image(docker_engine) -> str:
    return tinyweb.ensure(log=lambda _m: None)


def test_it_is_small_and_built_once(image):
    client = docker.from_env()
    assert client.images.get(image).attrs["Size"] < 3 * 1024 * 1024
    said = []
    assert tinyweb.ensure(log=said.append) == image
    assert said == [f"    {image} is present (reused)"]


def test_a_changed_page_is_a_new_image(tmp_path, image):
    (tmp_path / "index.html").write_text("another camp\n")
    files = tinyweb._inputs(tinyweb.BUSYBOX, tmp_path)
    assert tinyweb.tag_for(files) != image


def test_it_serves_its_page_as_nobody(image):
    client = docker.from_env()
    container = client.containers.run(
        image, detach=True, ports={"8080/tcp": ("127.0.0.1", None)}, remove=False
    )
    try:
        container.reload()
        port = int(container.ports["8080/tcp"][0]["HostPort"])

        def page() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    return r.read().decode()
            except OSError:
                return ""

        assert wait_until(lambda: "Served from a drone" in page(), 10), container.logs()
        assert container.attrs["Config"]["User"] == "65534:65534"
    finally:
        container.remove(force=True)


def test_the_archive_loads_back_as_the_same_image(tmp_path, image):
    client = docker.from_env()
    archive = tinyweb.save(image, tmp_path / "tinyweb.tar")
    assert archive.stat().st_size < 3 * 1024 * 1024
    before = client.images.get(image).id
    # gone from the engine, as on a drone that never had it
    client.images.remove(before, force=True)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(image)
    with archive.open("rb") as f:
        loaded = client.images.load(f.read())
    assert [i.id for i in loaded] == [before]
    assert image in loaded[0].tags
    loaded[0].tag(tinyweb.REPOSITORY, "latest")
