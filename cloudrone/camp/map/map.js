// The camp map: vector tiles read by HTTP range requests from one PMTiles
// archive on the drone, drawn by MapLibre with no server and no Internet.
(function () {
  "use strict";
  var ARCHIVE = "tiles.pmtiles";
  var status = document.getElementById("status");
  var state = { ready: false, error: null, features: 0 };
  window.cloudroneMap = state;

  var protocol = new pmtiles.Protocol();
  maplibregl.addProtocol("pmtiles", protocol.tile);
  var archive = new pmtiles.PMTiles(new URL(ARCHIVE, location.href).href);
  protocol.add(archive);

  var poiColour = [
    "match", ["get", "kind"],
    "hospital", "#d62828",
    "drinking_water", "#1d6fd6",
    "marketplace", "#e09f3e",
    "information", "#2a9d3f",
    "helipad", "#6a4c93",
    "#555555"
  ];

  function style(url) {
    var src = "camp";
    return {
      version: 8,
      sources: { camp: { type: "vector", url: "pmtiles://" + url } },
      layers: [
        { id: "background", type: "background", paint: { "background-color": "#dfe9f2" } },
        { id: "earth", type: "fill", source: src, "source-layer": "earth",
          paint: { "fill-color": "#eef0e6" } },
        { id: "landuse", type: "fill", source: src, "source-layer": "landuse",
          paint: { "fill-color": ["match", ["get", "kind"],
            "hospital", "#f6d5d5", "grass", "#cfe8b8", "park", "#cfe8b8",
            "marketplace", "#f5e3c3", "camp_block", "#ece3d0", "residential", "#e6e4dc",
            "#e4e4dc"] } },
        { id: "water", type: "fill", source: src, "source-layer": "water",
          paint: { "fill-color": "#8fc3ea" } },
        { id: "paths", type: "line", source: src, "source-layer": "roads",
          filter: ["in", ["get", "kind"], ["literal", ["path", "other"]]],
          paint: { "line-color": "#b9ab8f", "line-width": 1.5, "line-dasharray": [2, 1] } },
        { id: "roads", type: "line", source: src, "source-layer": "roads",
          filter: ["!", ["in", ["get", "kind"], ["literal", ["path", "other"]]]],
          layout: { "line-cap": "round" },
          paint: { "line-color": "#ffffff",
            "line-width": ["match", ["get", "kind"], "highway", 7, "major_road", 6, 3.5] } },
        { id: "buildings", type: "fill", source: src, "source-layer": "buildings",
          paint: { "fill-color": ["match", ["get", "kind"], "tent", "#f0f0f0", "#c9b8a6"],
                   "fill-outline-color": "#8a7b6a" } },
        { id: "pois", type: "circle", source: src, "source-layer": "pois",
          paint: { "circle-radius": 7, "circle-color": poiColour,
                   "circle-stroke-color": "#ffffff", "circle-stroke-width": 2 } }
      ]
    };
  }

  archive.getHeader().then(function (h) {
    var map = new maplibregl.Map({
      container: "map",
      style: style(archive.source.getKey()),
      center: [h.centerLon, h.centerLat],
      zoom: h.centerZoom,
      minZoom: Math.max(0, h.minZoom - 1),
      maxBounds: [[h.minLon - 0.01, h.minLat - 0.01], [h.maxLon + 0.01, h.maxLat + 0.01]],
      attributionControl: { compact: true }
    });
    window.cloudroneMapObject = map;
    map.addControl(new maplibregl.NavigationControl({ showCompass: false }));
    map.on("click", "pois", function (e) {
      var f = e.features[0];
      new maplibregl.Popup().setLngLat(f.geometry.coordinates)
        .setText(f.properties.name || f.properties.kind).addTo(map);
    });
    map.on("idle", function () {
      state.features = map.queryRenderedFeatures().length;
      state.ready = true;
      status.hidden = true;
    });
    map.on("error", function (e) {
      state.error = String((e.error && e.error.message) || e);
      status.textContent = "The map could not load: " + state.error;
    });
  }).catch(function (err) {
    state.error = String(err);
    status.textContent = "The map could not load: " + state.error;
  });
})();
