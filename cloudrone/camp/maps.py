"""Offline maps: a vector-tile PMTiles archive from GeoJSON, and the camp it draws.

A camp's map must come with the drones: no tile server is reachable where
they fly. A user gives a mission the region they need in one of two forms:

- a PMTiles archive of vector tiles (for example a region cut from a
  Protomaps basemap build with ``pmtiles extract``), served as it is; or
- GeoJSON (their own survey, or an export from OpenStreetMap), which
  :func:`tile` cuts into Mapbox Vector Tiles (``mapbox-vector-tile``) and
  writes as a PMTiles archive (``pmtiles``).

Features are drawn by the layers of the Protomaps basemap (``earth``,
``water``, ``landuse``, ``roads``, ``buildings``, ``pois``) and their
``kind``, so one map style draws both. A GeoJSON feature says its layer in a
``layer`` property; without it a point is a ``pois``, a line a ``roads`` and
an area a ``landuse``.

:func:`camp_layout` makes up a relief camp (tents in blocks, roads, a
stream, a clinic, water points, a drone launch field), the data the example
mission and the tests map: it is generated, so no map data is downloaded.

Tiles are stored uncompressed: a phone reads them from the archive by HTTP
range requests, and those break under a compressed transfer.

    python -m cloudrone.camp.maps layout OUT.geojson
    python -m cloudrone.camp.maps tile IN.geojson OUT.pmtiles [--min-zoom 12 --max-zoom 18]
    python -m cloudrone.camp.maps show ARCHIVE.pmtiles
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import mapbox_vector_tile
import numpy
import shapely
from pmtiles.reader import MmapSource, Reader
from pmtiles.tile import (
    Compression,
    MagicNumberNotFound,
    SpecVersionUnsupported,
    TileType,
    zxy_to_tileid,
)
from pmtiles.writer import Writer
from shapely.errors import ShapelyError
from shapely.geometry import LineString, Point, Polygon, box, mapping, shape

from cloudrone.paths import project_root

EXTENT = 4096
BUFFER = 64  # tile units drawn beyond the edge, so lines and areas join across tiles
LAYERS = ("earth", "water", "landuse", "roads", "buildings", "pois")
DEFAULT_LAYER = {"Point": "pois", "LineString": "roads", "Polygon": "landuse"}
# below these zooms a layer is left out, as basemaps leave out small things
MIN_ZOOM_OF = {"buildings": 15, "pois": 14}
ATTRIBUTION = "Cloudrone (a made-up camp)"


class MapError(ValueError):
    """Input that cannot become a map; the message names the file and the fix."""


# ---------------------------------------------------------------- the camp
# A made-up camp beside Null Island, so nobody mistakes it for a real place.
CAMP_CENTRE = (0.0500, 0.0500)  # lon, lat
METRES_PER_DEGREE = 111_320.0


def _at(east_m: float, north_m: float) -> tuple[float, float]:
    """lon, lat of a point east_m and north_m from the camp's centre."""
    lon0, lat0 = CAMP_CENTRE
    lat = lat0 + north_m / METRES_PER_DEGREE
    lon = lon0 + east_m / (METRES_PER_DEGREE * math.cos(math.radians(lat0)))
    return round(lon, 7), round(lat, 7)


def _rect(east: float, north: float, width: float, height: float) -> Polygon:
    return Polygon(
        [
            _at(east, north),
            _at(east + width, north),
            _at(east + width, north + height),
            _at(east, north + height),
        ]
    )


def _feature(geometry, layer: str, kind: str, name: str | None = None) -> dict:
    properties = {"layer": layer, "kind": kind}
    if name:
        properties["name"] = name
    return {"type": "Feature", "geometry": mapping(geometry), "properties": properties}


def camp_layout(blocks: tuple[int, int] = (4, 3), tents: tuple[int, int] = (5, 4)) -> dict:
    """A relief camp as a GeoJSON FeatureCollection, the same on every call.

    ``blocks`` tent blocks (columns, rows) of ``tents`` tents each, north of a
    main road; a clinic, a distribution point and a drone launch field south
    of it; a stream along the west side; a water point in every block.
    """
    features = [
        _feature(_rect(-450, -350, 900, 700), "earth", "earth"),
        _feature(_rect(-400, -300, 800, 600), "landuse", "residential", "Camp"),
    ]
    stream = LineString([_at(-420, -340), _at(-380, -100), _at(-410, 120), _at(-370, 340)])
    features.append(_feature(stream.buffer(0.00008, cap_style="flat"), "water", "river"))
    features.append(_feature(_rect(-380, -80, 40, 60), "water", "water", "Pond"))
    features.append(_feature(LineString([_at(-400, 0), _at(400, 0)]), "roads", "major_road"))
    features.append(
        _feature(LineString([_at(0, -300), _at(0, 0)]), "roads", "minor_road", "Clinic road")
    )
    block_w, block_h, street = 60.0, 50.0, 20.0
    cols, rows = blocks
    west = -(cols * (block_w + street)) / 2
    for col in range(cols + 1):
        x = west + col * (block_w + street) - street / 2
        features.append(
            _feature(
                LineString([_at(x, 10), _at(x, 10 + rows * (block_h + street))]),
                "roads",
                "path",
            )
        )
    for row in range(rows):
        for col in range(cols):
            bx = west + col * (block_w + street)
            by = 20 + row * (block_h + street)
            block = f"{chr(ord('A') + row)}{col + 1}"
            features.append(_feature(_rect(bx, by, block_w, block_h), "landuse", "camp_block"))
            tx, ty = tents
            for i in range(tx):
                for j in range(ty):
                    features.append(
                        _feature(
                            _rect(bx + 3 + i * 11.5, by + 4 + j * 11.5, 6, 4),
                            "buildings",
                            "tent",
                        )
                    )
            features.append(
                _feature(
                    Point(_at(bx + block_w + 4, by + block_h / 2)),
                    "pois",
                    "drinking_water",
                    f"Water point {block}",
                )
            )
    features += [
        _feature(_rect(30, -120, 120, 90), "landuse", "hospital", "Clinic"),
        _feature(_rect(60, -100, 50, 30), "buildings", "building", "Clinic"),
        _feature(Point(_at(85, -85)), "pois", "hospital", "Clinic"),
        _feature(_rect(-150, -110, 90, 70), "landuse", "marketplace", "Distribution"),
        _feature(_rect(-130, -95, 45, 25), "buildings", "building", "Stores"),
        _feature(Point(_at(-105, -60)), "pois", "marketplace", "Distribution point"),
        _feature(_rect(-150, -280, 160, 120), "landuse", "grass", "Launch field"),
        _feature(Point(_at(-70, -220)), "pois", "helipad", "Drone launch"),
        _feature(Point(_at(20, -15)), "pois", "information", "Registration and board"),
    ]
    return {"type": "FeatureCollection", "attribution": ATTRIBUTION, "features": features}


# ---------------------------------------------------------------- tiling
def _mercator(coords):
    """lon/lat (N x 2) to world units: 0..1 from west to east and north to south."""
    lon, lat = coords[:, 0], coords[:, 1].clip(-85.0511, 85.0511)
    x = (lon + 180.0) / 360.0
    rad = lat * math.pi / 180.0
    y = (1.0 - numpy.log(numpy.tan(rad) + 1.0 / numpy.cos(rad)) / math.pi) / 2.0
    return numpy.stack([x, y], axis=1)


@dataclass
class _Feature:
    layer: str
    world: object  # shapely geometry in world units
    properties: dict
    bounds: tuple[float, float, float, float]  # west, south, east, north in degrees


def _features(collection: dict, source: str) -> list[_Feature]:
    if not isinstance(collection, dict) or collection.get("type") != "FeatureCollection":
        raise MapError(f"{source}: not a GeoJSON FeatureCollection (its type must be that)")
    out = []
    for n, feature in enumerate(collection.get("features") or []):
        where = f"{source}: features[{n}]"
        try:
            geometry = shape(feature["geometry"])
        except (KeyError, TypeError, ValueError, AttributeError, ShapelyError) as exc:
            raise MapError(f"{where}.geometry: not a GeoJSON geometry ({exc})") from None
        if geometry.is_empty:
            continue
        properties = dict(feature.get("properties") or {})
        base = geometry.geom_type.removeprefix("Multi")
        layer = properties.pop("layer", DEFAULT_LAYER.get(base))
        if layer not in LAYERS:
            raise MapError(
                f"{where}.properties.layer: {layer!r} is not a layer the map draws; "
                f"use one of {', '.join(LAYERS)}"
            )
        if not geometry.is_valid:
            geometry = shapely.make_valid(geometry)
        world = shapely.transform(geometry, _mercator)
        clean = {k: v for k, v in properties.items() if isinstance(v, str | int | float | bool)}
        out.append(_Feature(layer, world, clean, geometry.bounds))
    if not out:
        raise MapError(f"{source}: holds no feature to map; give at least one")
    return out


def check_geojson(collection: dict, source: str) -> int:
    """How many features ``collection`` maps; MapError naming what is wrong."""
    return len(_features(collection, source))


def _tile_range(bounds, zoom: int) -> Iterable[tuple[int, int]]:
    minx, miny, maxx, maxy = bounds
    n = 2**zoom
    for x in range(max(0, int(minx * n)), min(n - 1, int(maxx * n)) + 1):
        for y in range(max(0, int(miny * n)), min(n - 1, int(maxy * n)) + 1):
            yield x, y


def _encode(features: list[_Feature], z: int, x: int, y: int) -> bytes | None:
    n = 2**z
    pad = BUFFER / EXTENT / n
    west, north = x / n, y / n
    clip = box(west - pad, north - pad, west + 1 / n + pad, north + 1 / n + pad)
    layers: dict[str, list] = {}
    for feature in features:
        if z < MIN_ZOOM_OF.get(feature.layer, 0) or not feature.world.intersects(clip):
            continue
        part = shapely.clip_by_rect(feature.world, *clip.bounds)
        if part.is_empty:
            continue
        local = shapely.transform(part, lambda c: (c - (west, north)) * n * EXTENT)
        layers.setdefault(feature.layer, []).append(
            {"geometry": local, "properties": feature.properties}
        )
    if not layers:
        return None
    return mapbox_vector_tile.encode(
        [{"name": name, "features": layers[name]} for name in LAYERS if name in layers],
        default_options={"y_coord_down": True, "extents": EXTENT},
    )


def tile(collection: dict, out: Path, *, min_zoom: int = 12, max_zoom: int = 18, source="") -> dict:
    """Write ``collection`` as a PMTiles archive of vector tiles; its header."""
    if not 0 <= min_zoom <= max_zoom <= 20:
        raise MapError(f"zooms {min_zoom}..{max_zoom}: give 0 <= min_zoom <= max_zoom <= 20")
    features = _features(collection, source or "the GeoJSON")
    world_bounds = shapely.GeometryCollection([f.world for f in features]).bounds
    tiles = []
    for z in range(min_zoom, max_zoom + 1):
        for x, y in _tile_range(world_bounds, z):
            data = _encode(features, z, x, y)
            if data is not None:
                tiles.append((zxy_to_tileid(z, x, y), data))
    tiles.sort()
    minx, miny = min(f.bounds[0] for f in features), min(f.bounds[1] for f in features)
    maxx, maxy = max(f.bounds[2] for f in features), max(f.bounds[3] for f in features)
    header = {
        "tile_type": TileType.MVT,
        "tile_compression": Compression.NONE,
        "min_lon_e7": int(minx * 1e7),
        "min_lat_e7": int(miny * 1e7),
        "max_lon_e7": int(maxx * 1e7),
        "max_lat_e7": int(maxy * 1e7),
        "center_zoom": min(max(min_zoom, 15), max_zoom),
        "center_lon_e7": int((minx + maxx) / 2 * 1e7),
        "center_lat_e7": int((miny + maxy) / 2 * 1e7),
    }
    metadata = {
        "name": out.stem,
        "attribution": str(collection.get("attribution", "")),
        "vector_layers": [
            {"id": name, "fields": {"kind": "String", "name": "String"}}
            for name in LAYERS
            if any(f.layer == name for f in features)
        ],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with partial.open("wb") as f:
        writer = Writer(f)
        for tile_id, data in tiles:
            writer.write_tile(tile_id, data)
        writer.finalize(header, metadata)
    partial.replace(out)
    return describe(out)


# ---------------------------------------------------------------- reading
def describe(path: Path) -> dict:
    """What an archive holds: its header as plain values, and its tiles' count.

    Raises MapError, naming the file, when it is no PMTiles v3 archive of
    vector tiles, the kind the mission's map draws.
    """
    try:
        with path.open("rb") as f:
            reader = Reader(MmapSource(f))
            header = reader.header()
            metadata = reader.metadata()
    except FileNotFoundError:
        raise MapError(
            f"{path}: no such file; give a .pmtiles or .geojson file of the bundle"
        ) from None
    except (MagicNumberNotFound, SpecVersionUnsupported, ValueError, OSError) as exc:
        raise MapError(
            f"{path}: not a PMTiles version 3 archive ({exc.__class__.__name__}); "
            "make one with `pmtiles convert` or give GeoJSON"
        ) from None
    if header["tile_type"] != TileType.MVT:
        raise MapError(
            f"{path}: holds {header['tile_type'].name} tiles; the map draws vector tiles "
            "(MVT), as a Protomaps basemap extract holds"
        )
    return {
        "tile_type": header["tile_type"].name,
        "tile_compression": header["tile_compression"].name,
        "min_zoom": header["min_zoom"],
        "max_zoom": header["max_zoom"],
        "bounds": [
            header["min_lon_e7"] / 1e7,
            header["min_lat_e7"] / 1e7,
            header["max_lon_e7"] / 1e7,
            header["max_lat_e7"] / 1e7,
        ],
        "center": [header["center_lon_e7"] / 1e7, header["center_lat_e7"] / 1e7],
        "center_zoom": header["center_zoom"],
        "tiles": header["addressed_tiles_count"],
        "layers": [layer["id"] for layer in metadata.get("vector_layers", [])],
        "bytes": path.stat().st_size,
    }


def read_tile(path: Path, z: int, x: int, y: int) -> dict | None:
    """One tile decoded: {layer: [features]}, or None where the archive has none."""
    with path.open("rb") as f:
        data = Reader(MmapSource(f)).get(z, x, y)
    if data is None:
        return None
    decoded = mapbox_vector_tile.decode(data, default_options={"y_coord_down": True})
    return {name: layer["features"] for name, layer in decoded.items()}


def dump_geojson(collection: dict) -> str:
    """GeoJSON text with one feature per line, so a change shows as a line in a diff."""
    head = {k: v for k, v in collection.items() if k != "features"}
    lines = [json.dumps(f, separators=(",", ":")) for f in collection["features"]]
    return json.dumps(head)[:-1] + ', "features": [\n' + ",\n".join(lines) + "\n]}\n"


def load_geojson(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MapError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MapError(f"{path}: not JSON ({exc}); give GeoJSON") from None


# ---------------------------------------------------------------- the page
PAGE = Path(__file__).parent / "map"
PAGE_FILES = ("index.html", "map.js")
# what the page takes from the npm packages (package.json and its lock beside the page)
VENDOR_FILES = {
    "maplibre-gl.js": "maplibre-gl/dist/maplibre-gl.js",
    "maplibre-gl.css": "maplibre-gl/dist/maplibre-gl.css",
    "pmtiles.js": "pmtiles/dist/pmtiles.js",
}
ARCHIVE_NAME = "tiles.pmtiles"


def _lock_digest() -> str:
    return hashlib.sha256((PAGE / "package-lock.json").read_bytes()).hexdigest()


def vendored(cache: Path) -> bool:
    """Whether ``cache`` holds the page's libraries as the lock pins them."""
    stamp = cache / ".lock-sha256"
    return (
        stamp.is_file()
        and stamp.read_text() == _lock_digest()
        and (cache / "node_modules").is_dir()
    )


def vendor_modules(cache: Path, log=print) -> Path:
    """node_modules with the page's libraries, installed by ``npm ci`` from the lock.

    Reused while the lock is unchanged; the npm registry is needed once.
    """
    modules = cache / "node_modules"
    if vendored(cache):
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise MapError("npm is not installed: run scripts/setup.sh (it installs nodejs and npm)")
    cache.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(PAGE / name, cache / name)
    log(f"    npm ci: the map page's libraries into {cache}")
    run = subprocess.run(
        [npm, "ci", "--omit=dev", "--no-audit", "--no-fund", "--ignore-scripts"],
        cwd=cache,
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        raise MapError(f"npm ci in {cache} failed: {run.stderr.strip()[-400:]}")
    (cache / ".lock-sha256").write_text(_lock_digest())
    return modules


VENDOR_CACHE = Path(".cache") / "offline-map"  # under the project's root


def build_site(source: Path, out: Path, cache: Path, log=print) -> dict:
    """The map service's web root in ``out``: the page, its libraries, the archive.

    ``source`` is a PMTiles archive, used as it is, or GeoJSON, cut here.
    Returns the archive's description.
    """
    if source.suffix not in (".pmtiles", ".geojson", ".json"):
        raise MapError(f"{source}: give a .pmtiles archive or a .geojson file")
    modules = vendor_modules(cache, log)
    if out.exists():
        shutil.rmtree(out)
    (out / "vendor").mkdir(parents=True)
    for name in PAGE_FILES:
        shutil.copyfile(PAGE / name, out / name)
    for name, relative in VENDOR_FILES.items():
        shutil.copyfile(modules / relative, out / "vendor" / name)
    archive = out / ARCHIVE_NAME
    if source.suffix == ".pmtiles":
        info = describe(source)
        shutil.copyfile(source, archive)
    else:
        info = tile(load_geojson(source), archive, source=str(source))
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudrone.camp.maps")
    sub = parser.add_subparsers(dest="command", required=True)
    layout = sub.add_parser("layout", help="write the made-up camp as GeoJSON")
    layout.add_argument("out", type=Path)
    cut = sub.add_parser("tile", help="cut GeoJSON into a PMTiles archive of vector tiles")
    cut.add_argument("geojson", type=Path)
    cut.add_argument("out", type=Path)
    cut.add_argument("--min-zoom", type=int, default=12)
    cut.add_argument("--max-zoom", type=int, default=18)
    site = sub.add_parser("site", help="write the map service's web root")
    site.add_argument("source", type=Path, help="a .pmtiles archive or a .geojson file")
    site.add_argument("out", type=Path)
    sub.add_parser("vendor", help="install the page's libraries (npm ci), reused when present")
    show = sub.add_parser("show", help="describe a PMTiles archive")
    show.add_argument("archive", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "layout":
            args.out.write_text(dump_geojson(camp_layout()), encoding="utf-8")
            print(f"wrote {args.out}")
        elif args.command == "tile":
            info = tile(
                load_geojson(args.geojson),
                args.out,
                min_zoom=args.min_zoom,
                max_zoom=args.max_zoom,
                source=str(args.geojson),
            )
            print(f"wrote {args.out}: {info['tiles']} tiles, {info['bytes']} bytes")
        elif args.command == "vendor":
            modules = vendor_modules(project_root() / VENDOR_CACHE)
            print(f"    {modules} (maplibre-gl, pmtiles as package-lock.json pins them)")
        elif args.command == "site":
            info = build_site(args.source, args.out, project_root() / VENDOR_CACHE)
            print(f"wrote {args.out}: the page and {info['tiles']} tiles")
        else:
            print(json.dumps(describe(args.archive), indent=1))
    except MapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
