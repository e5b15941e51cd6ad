// Draws GeoJSON (MultiPolygons of H3 cells, [lng, lat]) as SVG: no tiles, no library.
// An equirectangular projection around the middle latitude is exact enough for a city.

const NS = "http://www.w3.org/2000/svg";
const K = 100000; // viewBox units per degree of latitude

function el(tag, attrs = {}) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, v);
  return e;
}

export class GeoMap {
  /**
   * @param {SVGSVGElement} svg
   * @param {object} o
   * @param {(pick: {id?: string, lat: number, lng: number}) => void} [o.onPick] a click or Enter on the map
   * @param {boolean} [o.focusable] areas take the keyboard focus (a few areas only)
   * @param {(feature) => string} [o.label] the accessible name of an area
   * @param {(feature) => string} [o.text] a label drawn at the area's centre
   * @param {number} [o.marker] marker radius as a share of the view's width
   */
  constructor(svg, o = {}) {
    this.svg = svg;
    this.o = { marker: 1 / 45, ...o };
    this.areas = new Map();
    this.features = [];
    this.gAreas = el("g", { class: "areas" });
    this.gText = el("g", { class: "labels", "aria-hidden": "true" });
    this.gMarkers = el("g", { class: "markers" });
    this.gPin = el("g", { class: "pin", "aria-hidden": "true" });
    svg.append(this.gAreas, this.gMarkers, this.gText, this.gPin);
    this.markers = [];
    svg.addEventListener("click", (e) => this.click(e));
  }

  load(fc) {
    this.features = fc.features || [];
    let [minLng, minLat, maxLng, maxLat] = fc.bbox || [Infinity, Infinity, -Infinity, -Infinity];
    if (!fc.bbox) {
      for (const f of this.features)
        for (const poly of f.geometry.coordinates)
          for (const ring of poly)
            for (const [lng, lat] of ring) {
              minLng = Math.min(minLng, lng);
              maxLng = Math.max(maxLng, lng);
              minLat = Math.min(minLat, lat);
              maxLat = Math.max(maxLat, lat);
            }
    }
    if (!isFinite(minLng)) [minLng, minLat, maxLng, maxLat] = [114.3, 30.6, 114.31, 30.61];
    this.minLng = minLng;
    this.maxLat = maxLat;
    this.cos = Math.cos((((minLat + maxLat) / 2) * Math.PI) / 180);
    const [w, h] = this.project(maxLng, minLat);
    const pad = Math.max(w, h) * 0.04 + 50;
    this.full = { x: -pad, y: -pad, w: w + 2 * pad, h: h + 2 * pad };
    this.setView(this.full);
    this.drawAreas();
  }

  project(lng, lat) {
    return [(lng - this.minLng) * this.cos * K, (this.maxLat - lat) * K];
  }

  unproject(x, y) {
    return { lng: x / (this.cos * K) + this.minLng, lat: this.maxLat - y / K };
  }

  pathOf(geometry) {
    const polys = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates;
    let d = "";
    for (const poly of polys)
      for (const ring of poly) {
        ring.forEach(([lng, lat], i) => {
          const [x, y] = this.project(lng, lat);
          d += (i ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1);
        });
        d += "Z";
      }
    return d;
  }

  drawAreas() {
    this.gAreas.replaceChildren();
    this.gText.replaceChildren();
    this.areas.clear();
    for (const f of this.features) {
      const path = el("path", { d: this.pathOf(f.geometry), class: "area", "data-id": f.id });
      const title = el("title");
      title.textContent = this.o.label ? this.o.label(f) : f.id;
      path.append(title);
      if (this.o.focusable) {
        path.setAttribute("tabindex", "0");
        path.setAttribute("role", "button");
        path.setAttribute("aria-label", title.textContent);
        path.addEventListener("keydown", (e) => {
          if (e.key === "Enter" || e.key === " ") {
            e.preventDefault();
            const c = f.properties?.center;
            this.pick({ id: f.id, lat: c?.lat, lng: c?.lng });
          }
        });
      }
      this.gAreas.append(path);
      this.areas.set(f.id, { path, title, feature: f });
      if (this.o.text && f.properties?.center) {
        const [x, y] = this.project(f.properties.center.lng, f.properties.center.lat);
        // Above the centre, where an incident raised for the grid puts its marker.
        const txt = el("text", { x: x.toFixed(1), y: y.toFixed(1), dy: "-0.55em", class: "area-label", "text-anchor": "middle" });
        txt.textContent = this.o.text(f);
        this.gText.append(txt);
      }
    }
    this.sizeText();
  }

  /** Sets an area's classes (besides "area") and its hover title. */
  paint(id, cls, titleText) {
    const a = this.areas.get(id);
    if (!a) return;
    a.path.setAttribute("class", "area " + (cls || ""));
    if (titleText !== undefined) {
      a.title.textContent = titleText;
      if (this.o.focusable) a.path.setAttribute("aria-label", titleText);
    }
  }

  relabel() {
    for (const a of this.areas.values()) {
      const text = this.o.label ? this.o.label(a.feature) : a.feature.id;
      a.title.textContent = text;
      if (this.o.focusable) a.path.setAttribute("aria-label", text);
    }
  }

  /** Markers: [{id, lat, lng, cls, title}]. */
  setMarkers(markers) {
    this.markers = markers;
    this.gMarkers.replaceChildren();
    const r = this.view.w * this.o.marker;
    for (const m of markers) {
      const [x, y] = this.project(m.lng, m.lat);
      const c = el("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: r.toFixed(1), class: "marker " + (m.cls || ""), "data-id": m.id });
      const title = el("title");
      title.textContent = m.title || m.id;
      c.append(title);
      this.gMarkers.append(c);
    }
  }

  /** A crosshair where the user picked a point; null hides it. */
  setPin(p) {
    this.pinAt = p;
    this.gPin.replaceChildren();
    if (!p) return;
    const [x, y] = this.project(p.lng, p.lat);
    const r = this.view.w * this.o.marker * 0.8;
    this.gPin.append(
      el("circle", { cx: x, cy: y, r, class: "pin-ring" }),
      el("path", { d: `M${x - r * 1.6} ${y}H${x + r * 1.6}M${x} ${y - r * 1.6}V${y + r * 1.6}`, class: "pin-cross" }),
    );
  }

  setView(v) {
    this.view = v;
    this.svg.setAttribute("viewBox", `${v.x.toFixed(1)} ${v.y.toFixed(1)} ${v.w.toFixed(1)} ${v.h.toFixed(1)}`);
    if (this.markers.length) this.setMarkers(this.markers);
    if (this.pinAt) this.setPin(this.pinAt);
    this.sizeText();
  }

  sizeText() {
    const size = (this.view?.w || 1000) / 22;
    for (const t of this.gText.children) t.setAttribute("font-size", size.toFixed(1));
  }

  zoom(factor) {
    const v = this.view;
    const w = Math.min(this.full.w * 1.5, Math.max(this.full.w / 40, v.w / factor));
    const h = (w * v.h) / v.w;
    this.setView({ x: v.x + (v.w - w) / 2, y: v.y + (v.h - h) / 2, w, h });
  }

  pan(dx, dy) {
    const v = this.view;
    this.setView({ ...v, x: v.x + dx * v.w * 0.25, y: v.y + dy * v.h * 0.25 });
  }

  reset() {
    this.setView(this.full);
  }

  /** Centres the view on a place, at a zoom showing about `spanDeg` degrees of latitude. */
  focus(lat, lng, spanDeg) {
    const [x, y] = this.project(lng, lat);
    const h = Math.min(this.full.h, spanDeg * K);
    const w = (h * this.full.w) / this.full.h;
    this.setView({ x: x - w / 2, y: y - h / 2, w, h });
  }

  click(e) {
    if (!this.o.onPick || !this.features.length) return;
    const ctm = this.svg.getScreenCTM();
    if (!ctm) return;
    const pt = new DOMPoint(e.clientX, e.clientY).matrixTransform(ctm.inverse());
    const target = e.target.closest ? e.target.closest("[data-id]") : null;
    const id = target && target.classList.contains("area") ? target.dataset.id : undefined;
    this.pick({ id, ...this.unproject(pt.x, pt.y) });
  }

  pick(p) {
    if (this.o.onPick) this.o.onPick(p);
  }
}
