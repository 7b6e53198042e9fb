"""The offline map's data: the made-up camp, cut into vector tiles in a PMTiles
archive, read back with the same libraries a phone's pmtiles reader mirrors; bad
maps named by file and field. The page that draws it is tested in a browser
(tests/integration/test_map_browser.py)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

from cloudrone.camp import maps
from cloudrone.mission.model import MissionError, load
from tests.conftest import ROOT

CAMP_DIR = ROOT / "missions" / "relief-camp"
CAMP = (CAMP_DIR / "mission.yml").read_text()


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    rad = math.radians(lat)
    y = int((1 - math.log(math.tan(rad) + 1 / math.cos(rad)) / math.pi) / 2 * n)
    return x, y


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("map") / "camp.pmtiles"
    maps.tile(maps.camp_layout(), out, source="camp")
    return out


def test_the_committed_camp_is_what_the_layout_writes():
    committed = (CAMP_DIR / "maps" / "camp.geojson").read_text()
    assert committed == maps.dump_geojson(maps.camp_layout()), (
        "regenerate: python -m cloudrone.camp.maps layout missions/relief-camp/maps/camp.geojson"
    )
    layout = json.loads(committed)
    kinds = [f["properties"]["kind"] for f in layout["features"]]
    assert kinds.count("tent") == 4 * 3 * 5 * 4
    assert kinds.count("drinking_water") == 12
    assert {"hospital", "helipad", "information", "river", "major_road"} <= set(kinds)


def test_the_archive_holds_uncompressed_vector_tiles_around_the_camp(archive):
    info = maps.describe(archive)
    assert info["tile_type"] == "MVT" and info["tile_compression"] == "NONE"
    assert (info["min_zoom"], info["max_zoom"]) == (12, 18)
    west, south, east, north = info["bounds"]
    lon, lat = maps.CAMP_CENTRE
    assert west < lon < east and south < lat < north
    assert info["center"] == pytest.approx([lon, lat], abs=1e-4)
    assert info["layers"] == list(maps.LAYERS)
    assert 30 < info["tiles"] < 200 and info["bytes"] < 200_000


def test_a_tile_holds_the_camp_in_tile_coordinates(archive):
    # the tile under the clinic at zoom 17: its building, its point, with names
    lon, lat = maps._at(85, -85)
    x, y = tile_of(lon, lat, 17)
    layers = maps.read_tile(archive, 17, x, y)
    assert layers is not None
    clinic = [f for f in layers["pois"] if f["properties"]["kind"] == "hospital"]
    assert [f["properties"]["name"] for f in clinic] == ["Clinic"]
    px, py = clinic[0]["geometry"]["coordinates"]
    # where the point falls in the tile, from the same projection
    n = 2**17
    fx = ((lon + 180) / 360 * n - x) * maps.EXTENT
    rad = math.radians(lat)
    fy = ((1 - math.log(math.tan(rad) + 1 / math.cos(rad)) / math.pi) / 2 * n - y) * maps.EXTENT
    assert abs(px - fx) <= 1 and abs(py - fy) <= 1
    assert any(f["properties"].get("name") == "Clinic" for f in layers["buildings"])


def test_small_things_are_left_out_at_low_zoom_and_the_main_road_crosses_tiles(archive):
    x, y = tile_of(*maps.CAMP_CENTRE, 13)
    low = maps.read_tile(archive, 13, x, y)
    assert low is not None and "buildings" not in low and "pois" not in low
    assert "roads" in low and "water" in low
    # the main road runs east-west through the whole camp: on every zoom-18 tile it crosses
    lon_w, lat = maps._at(-390, 0)
    lon_e, _ = maps._at(390, 0)
    (xw, yr), (xe, _) = tile_of(lon_w, lat, 18), tile_of(lon_e, lat, 18)
    assert xe - xw >= 3
    for x in range(xw, xe + 1):
        layers = maps.read_tile(archive, 18, x, yr) or {}
        kinds = [f["properties"]["kind"] for f in layers.get("roads", [])]
        assert "major_road" in kinds, (x, yr)
    assert maps.read_tile(archive, 18, 0, 0) is None


def test_a_users_geojson_without_layers_is_drawn_by_geometry(tmp_path):
    collection = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [10.0, 45.0]},
             "properties": {"name": "Well", "nested": {"dropped": True}}},
            {"type": "Feature", "geometry": {"type": "LineString",
             "coordinates": [[10.0, 45.0], [10.001, 45.001]]}, "properties": None},
        ],
    }  # fmt: skip
    out = tmp_path / "mine.pmtiles"
    info = maps.tile(collection, out, min_zoom=14, max_zoom=16)
    assert info["layers"] == ["roads", "pois"] and info["min_zoom"] == 14
    x, y = tile_of(10.0, 45.0, 16)
    layers = maps.read_tile(out, 16, x, y)
    assert layers["pois"][0]["properties"] == {"name": "Well"}


@pytest.mark.parametrize(
    ("collection", "said"),
    [
        ({"type": "Feature"}, "not a GeoJSON FeatureCollection"),
        ({"type": "FeatureCollection", "features": []}, "holds no feature to map"),
        ({"type": "FeatureCollection", "features": [{"geometry": {"type": "Blob"}}]},
         "x.geojson: features[0].geometry: not a GeoJSON geometry"),
        ({"type": "FeatureCollection", "features": [{"geometry": {"type": "Point",
          "coordinates": [1, 2]}, "properties": {"layer": "rivers"}}]},
         "features[0].properties.layer: 'rivers' is not a layer the map draws; use one of earth"),
    ],
)  # fmt: skip
def test_bad_geojson_is_named_and_writes_nothing(tmp_path, collection, said):
    out = tmp_path / "x.pmtiles"
    with pytest.raises(maps.MapError, match=None) as caught:
        maps.tile(collection, out, source="x.geojson")
    assert said in str(caught.value)
    assert not out.exists()


def raster_archive(path):
    with path.open("wb") as f:
        writer = Writer(f)
        writer.write_tile(zxy_to_tileid(0, 0, 0), b"\x89PNG fake")
        writer.finalize(
            {"tile_type": TileType.PNG, "tile_compression": Compression.NONE}, {"name": "r"}
        )
    return path


def test_an_archive_the_map_cannot_draw_is_refused_with_the_fix(tmp_path):
    with pytest.raises(maps.MapError, match="holds PNG tiles; the map draws vector tiles"):
        maps.describe(raster_archive(tmp_path / "r.pmtiles"))
    (tmp_path / "t.pmtiles").write_bytes(b"not an archive at all" * 10)
    with pytest.raises(maps.MapError, match="not a PMTiles version 3 archive"):
        maps.describe(tmp_path / "t.pmtiles")


# -- the bundle: offline-map's content is checked where the bundle is checked ----------
def camp_bundle(tmp_path, text):
    folder = tmp_path / "bundle"
    if not folder.exists():
        shutil.copytree(CAMP_DIR, folder)
    (folder / "mission.yml").write_text(text)
    return folder


def test_the_relief_camp_bundle_loads_with_its_map():
    mission = load(CAMP_DIR)
    services = {s.name: s for s in mission.services}
    assert services["map"].build == ("offline-map", (CAMP_DIR / "maps" / "camp.geojson").resolve())
    assert services["map"].replicas == 2 and len(mission.drones) == 4
    assert mission.access_point.landing_page


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        ("      content: maps/camp.geojson\n", "", "offline-map needs its map"),
        ("content: maps/camp.geojson", "content: maps/none.geojson", "not a file inside"),
        ("content: maps/camp.geojson", "content: ../../etc/hostname", "not a file inside"),
        ("content: maps/camp.geojson", "content: news/index.html", "give a .pmtiles archive"),
        ("content: maps/camp.geojson", "content: maps/raster.pmtiles", "holds PNG tiles"),
        ("content: maps/camp.geojson", "content: maps/bad.geojson", "maps/bad.geojson: not JSON"),
    ],
)
def test_a_bad_map_in_the_bundle_is_named_by_field(tmp_path, old, new, said):
    folder = camp_bundle(tmp_path, CAMP.replace(old, new, 1))
    raster_archive(folder / "maps" / "raster.pmtiles")
    (folder / "maps" / "bad.geojson").write_text("{nope")
    with pytest.raises(MissionError) as caught:
        load(folder)
    found = caught.value.problems
    assert any(" services[0].build.content: " in p and said in p for p in found), found
