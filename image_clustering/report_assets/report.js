// imgclust report: the map (WebGL point sprites textured from thumbnail atlases), galleries, the
// k control, search and neighbours. Reads window.IMGCLUST_REPORT (data.js). Text from the user's
// files only ever goes in through textContent / attributes, never innerHTML.
"use strict";
(function () {
  const D = window.IMGCLUST_REPORT;
  const N = D.n;
  const $ = (id) => document.getElementById(id);

  function decode(b64, Type) {
    const bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Type(bytes.buffer);
  }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const xy = decode(D.xy, Float32Array);
  const clusterings = D.clusterings.map((c) => {
    const q = decode(c.dist, Uint16Array), dist = new Float32Array(N);
    for (let i = 0; i < N; i++) dist[i] = q[i] === 65535 ? NaN : (q[i] / 65534) * c.dmax;
    let labels = decode(c.labels, c.labelBytes === 1 ? Uint8Array : Int16Array);
    if (c.labelBytes === 1) labels = Int16Array.from(labels, (v) => v - 1);  // stored as cluster + 1
    return { name: c.name, k: c.k, current: c.current, group: c.group, colours: c.colours, names: c.names || {},
             labels, dist, medians: null };
  });
  const nb = D.neighbours ? { m: D.neighbours.m, index: decode(D.neighbours.index, Int32Array),
                              sim: decode(D.neighbours.sim, Float32Array) } : null;
  // The original of photo i, or null where the page must not link it: the generator leaves out rows
  // that leave the photo folder (label tables come from elsewhere); a path that still climbs out
  // ("..", "%2e%2e", an absolute or empty segment) is refused here too.
  const DOTS = new Set([".", "..", "%2e", "%2e%2e", ".%2e", "%2e."]);
  const href = (i) => {
    const h = D.hrefs[i];
    if (typeof h !== "string" || h === "" || h.split("/").some((s) => s === "" || DOTS.has(s.toLowerCase()))) return null;
    return D.imageBase + h;
  };
  const setLink = (node, attr, url) => {   // no url: no attribute, so the browser loads nothing
    if (url) node.setAttribute(attr, url); else node.removeAttribute(attr);
    node.hidden = !url;
  };

  // Colours: those of the PNG plots (image_clustering/colours.py), chosen per clustering by its k.
  const colour = (c) => { const list = clusterings[current].colours; return c < 0 ? D.unclustered : list[c % list.length]; };
  const rgb = (hex) => [1, 3, 5].map((j) => parseInt(hex.slice(j, j + 2), 16) / 255);

  let current = Math.max(0, clusterings.findIndex((c) => c.current));
  let highlighted = null;   // cluster number or null
  let matches = null;       // Uint8Array of search hits or null
  let selected = -1;

  // ------------------------------------------------------------------ the map (WebGL)
  const canvas = $("map");
  const gl = canvas.getContext("webgl", { antialias: false, preserveDrawingBuffer: true });
  const view = { x: 0.5, y: 0.5, zoom: 1 };  // world point at the centre, pixels per world unit / min side
  const basePoint = Math.min(0.12, 0.7 / Math.sqrt(Math.max(N, 1)));  // world units of one thumbnail
  let program, buffers = {}, textures = [], pointMax = 64;

  function shader(type, src) {
    const s = gl.createShader(type);
    gl.shaderSource(s, src);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
    return s;
  }
  function setupGL() {
    // Per point 16 bytes: position (2 floats), atlas cell (2 bytes), colour + state (4 bytes, the
    // state byte: 255 selected, 128 shown, 23 dimmed) — fewer bytes per vertex, faster frames.
    const vs = `attribute vec2 aPos; attribute vec2 aCell; attribute vec4 aColour;
      uniform vec2 uScale; uniform vec2 uCentre; uniform float uSize;
      varying vec2 vCell; varying vec3 vColour; varying float vAlpha;
      void main() { gl_Position = vec4((aPos - uCentre) * uScale * vec2(1.0, -1.0), 0.0, 1.0);
        vAlpha = aColour.a * 255.0 / 128.0;
        gl_PointSize = uSize * (vAlpha > 1.5 ? 1.6 : 1.0); vCell = aCell; vColour = aColour.rgb; }`;
    const fs = `precision mediump float; uniform sampler2D uAtlas; uniform float uThumbs; uniform float uColumns;
      uniform vec2 uAtlasScale; uniform float uBorder;
      varying vec2 vCell; varying vec3 vColour; varying float vAlpha;
      void main() { vec2 p = gl_PointCoord; vec3 c = vColour;
        bool edge = p.x < uBorder || p.y < uBorder || p.x > 1.0 - uBorder || p.y > 1.0 - uBorder;
        if (uThumbs > 0.5 && !edge) c = texture2D(uAtlas, (vCell + p) * uAtlasScale).rgb;
        float a = vAlpha > 1.5 ? 1.0 : vAlpha;
        if (vAlpha > 1.5 && edge) c = vec3(1.0);
        gl_FragColor = vec4(c * a + vec3(0.08) * (1.0 - a), 1.0); }`;
    program = gl.createProgram();
    gl.attachShader(program, shader(gl.VERTEX_SHADER, vs));
    gl.attachShader(program, shader(gl.FRAGMENT_SHADER, fs));
    gl.linkProgram(program);
    gl.useProgram(program);
    pointMax = gl.getParameter(gl.ALIASED_POINT_SIZE_RANGE)[1];
    const cells = new Uint8Array(2 * N);
    for (let i = 0; i < N; i++) { const j = i % D.per_atlas; cells[2 * i] = j % D.columns; cells[2 * i + 1] = Math.floor(j / D.columns); }
    for (const [name, data, size, type, norm] of [["aPos", xy, 2, gl.FLOAT, false], ["aCell", cells, 2, gl.UNSIGNED_BYTE, false],
                                                  ["aColour", new Uint8Array(4 * N), 4, gl.UNSIGNED_BYTE, true]]) {
      const b = gl.createBuffer(), loc = gl.getAttribLocation(program, name);
      gl.bindBuffer(gl.ARRAY_BUFFER, b);
      gl.bufferData(gl.ARRAY_BUFFER, data, name === "aColour" ? gl.DYNAMIC_DRAW : gl.STATIC_DRAW);
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, size, type, norm, 0, 0);
      buffers[name] = b;
    }
    // Each atlas script calls imgclustAtlas(a, base64 JPEG); a blob: URL of those bytes is
    // same-origin, so WebGL may use it (a file:// image would count as cross-origin).
    window.imgclustAtlas = (a, b64) => {
      const url = URL.createObjectURL(new Blob([decode(b64, Uint8Array)], { type: "image/jpeg" }));
      const img = new Image();
      img.onload = () => {
        const t = gl.createTexture();
        gl.bindTexture(gl.TEXTURE_2D, t);
        gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGB, gl.RGB, gl.UNSIGNED_BYTE, img);
        for (const [p, v] of [[gl.TEXTURE_MIN_FILTER, gl.LINEAR], [gl.TEXTURE_MAG_FILTER, gl.LINEAR],
                              [gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE], [gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE]]) gl.texParameteri(gl.TEXTURE_2D, p, v);
        textures[a] = { t, w: img.width, h: img.height };
        atlasesLoaded++;
        requestDraw();
      };
      img.src = atlasUrls[a] = url;
      document.querySelectorAll('.thumb[data-atlas="' + a + '"]').forEach((b) => (b.style.backgroundImage = 'url("' + url + '")'));
    };
    D.atlases.forEach((name, a) => { textures[a] = null; document.body.append(el("script", { src: name })); });
  }
  let atlasesLoaded = 0;
  const atlasUrls = [];

  function recolour() {
    const labels = clusterings[current].labels, col = new Uint8Array(4 * N);
    const rgbs = new Map();
    for (let i = 0; i < N; i++) {
      const c = labels[i];
      if (!rgbs.has(c)) rgbs.set(c, rgb(colour(c)).map((v) => Math.round(v * 255)));
      col.set(rgbs.get(c), 4 * i);
      const on = (highlighted === null || c === highlighted) && (!matches || matches[i]) && (!dateOk || dateOk[i]);
      col[4 * i + 3] = i === selected ? 255 : on ? 128 : 23;
    }
    if (!gl) return;
    gl.bindBuffer(gl.ARRAY_BUFFER, buffers.aColour); gl.bufferSubData(gl.ARRAY_BUFFER, 0, col);
    requestDraw();
  }

  // Pixels per world unit (CSS pixels): the unit square fills the map less one thumbnail.
  const FIT = Math.max(0.5, 0.95 - basePoint);
  function cssSide() { return Math.min(canvas.clientWidth, canvas.clientHeight) * view.zoom * FIT; }
  function pointPixels() { return basePoint * view.zoom * Math.min(canvas.width, canvas.height); }

  let drawn = { x: 0.5, y: 0.5, zoom: 1 };  // the view the canvas pixels show
  function draw() {
    if (!gl) return;
    drawn = { x: view.x, y: view.y, zoom: view.zoom };
    canvas.style.transform = labelLayer.style.transform = "";
    placeLabels();
    const w = canvas.clientWidth * devicePixelRatio, h = canvas.clientHeight * devicePixelRatio;
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    gl.viewport(0, 0, canvas.width, canvas.height);
    gl.clearColor(0.08, 0.08, 0.09, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    const side = cssSide() * devicePixelRatio;
    gl.uniform2f(gl.getUniformLocation(program, "uScale"), (2 * side) / canvas.width, (2 * side) / canvas.height);
    gl.uniform2f(gl.getUniformLocation(program, "uCentre"), view.x, view.y);
    const size = Math.max(2, Math.min(pointMax, pointPixels()));
    gl.uniform1f(gl.getUniformLocation(program, "uSize"), size);
    gl.uniform1f(gl.getUniformLocation(program, "uBorder"), size >= 10 ? Math.min(0.2, 2.5 / size) : 0.5);
    if (size < 10) {  // dots: no texture needed, one draw call for every point
      gl.uniform1f(gl.getUniformLocation(program, "uThumbs"), 0);
      gl.drawArrays(gl.POINTS, 0, N);
    } else {
      for (let a = 0; a < D.atlases.length; a++) {  // one draw call per atlas texture
        const start = a * D.per_atlas, count = Math.min(N - start, D.per_atlas), tex = textures[a];
        gl.uniform1f(gl.getUniformLocation(program, "uThumbs"), tex ? 1 : 0);
        if (tex) {
          gl.bindTexture(gl.TEXTURE_2D, tex.t);
          gl.uniform2f(gl.getUniformLocation(program, "uAtlasScale"), D.cell / tex.w, D.cell / tex.h);
        }
        gl.drawArrays(gl.POINTS, start, count);
      }
    }
    if (selected >= 0) gl.drawArrays(gl.POINTS, selected, 1);  // on top of its neighbours
  }
  let pending = false;
  function requestDraw() { if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; draw(); }); } }
  // Cluster numbers on the map at each cluster's median point, as the PNG plots write them, and
  // a legend (colour, number, name, count) whose entries highlight their cluster.
  const labelLayer = $("map-labels"), LABELS_MAX = 300;
  function medians(c) {
    if (c.medians) return c.medians;
    const xs = new Map(), ys = new Map();
    for (let i = 0; i < N; i++) {
      const l = c.labels[i];
      if (l < 0) continue;
      if (!xs.has(l)) { xs.set(l, []); ys.set(l, []); }
      xs.get(l).push(xy[2 * i]); ys.get(l).push(xy[2 * i + 1]);
    }
    const mid = (a) => { a.sort((p, q) => p - q); return a[Math.floor(a.length / 2)]; };
    c.medians = [...xs.keys()].sort((a, b) => a - b).map((l) => [l, mid(xs.get(l)), mid(ys.get(l))]);
    return c.medians;
  }
  function renderLabels() {
    const c = clusterings[current];
    labelLayer.replaceChildren(...(c.k > LABELS_MAX ? [] : medians(c).map(([l]) => {
      const tag = el("span", { class: "map-label", "data-cluster": String(l) }, String(l));
      tag.style.borderColor = colour(l);
      return tag;
    })));
    placeLabels();
  }
  function placeLabels() {
    const c = clusterings[current];
    if (c.k > LABELS_MAX || !labelLayer.firstChild) return;
    const side = cssSide(), cx = canvas.clientWidth / 2, cy = canvas.clientHeight / 2;
    medians(c).forEach(([, x, y], j) => {
      const tag = labelLayer.children[j];
      tag.style.left = cx + (x - drawn.x) * side + "px"; tag.style.top = cy + (y - drawn.y) * side + "px";
    });
  }
  function renderLegend(lists) {
    const root = $("legend-list");
    root.replaceChildren(...lists.map(([label, list]) => {
      const item = el("li"), b = el("button", { class: "legend-entry", "data-cluster": String(label) });
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = colour(label);
      b.append(swatch, el("span", {}, (label < 0 ? "unclustered" : String(label)) + (nameOf(label) ? " " + nameOf(label) : "") +
                               " · " + list.length));
      b.addEventListener("click", () => focusCluster(label));
      item.append(b);
      return item;
    }));
  }

  // Pan and zoom. Redrawing every point costs about 1 µs a point where WebGL runs on the CPU
  // (no GPU: SwiftShader), 0.1 s at 100,000 points; above LIVE_LIMIT points the last frame is
  // moved and scaled by a CSS transform (the compositor's work, one frame at display rate) while
  // the view moves, and redrawn once it rests for SETTLE_MS.
  const LIVE_LIMIT = 20000, SETTLE_MS = 120;
  let settle = null;
  function viewChanged() {
    if (N <= LIVE_LIMIT) { requestDraw(); return; }
    const k = view.zoom / drawn.zoom, side = cssSide();
    canvas.style.transform = labelLayer.style.transform =
      `translate(${(drawn.x - view.x) * side}px, ${(drawn.y - view.y) * side}px) scale(${k})`;
    clearTimeout(settle);
    settle = setTimeout(draw, SETTLE_MS);
  }

  // Hover picking: a uniform grid over the unit square, so each mouse move looks at a few points.
  const G = Math.max(1, Math.ceil(Math.sqrt(N / 4)));
  const grid = Array.from({ length: G * G }, () => []);
  for (let i = 0; i < N; i++) {
    const gx = Math.min(G - 1, Math.floor(xy[2 * i] * G)), gy = Math.min(G - 1, Math.floor(xy[2 * i + 1] * G));
    grid[gy * G + gx].push(i);
  }
  function toWorld(px, py) {
    const side = cssSide();
    return [view.x + (px - canvas.clientWidth / 2) / side, view.y + (py - canvas.clientHeight / 2) / side];
  }
  function pick(px, py) {
    const [wx, wy] = toWorld(px, py);
    const side = cssSide();
    const half = Math.max(3, Math.min(pointMax / devicePixelRatio, pointPixels() / devicePixelRatio)) / 2 / side;
    const r = Math.ceil(half * G);
    const gx = Math.floor(wx * G), gy = Math.floor(wy * G);
    let best = -1, bestD = Infinity;
    for (let y = Math.max(0, gy - r); y <= Math.min(G - 1, gy + r); y++)
      for (let x = Math.max(0, gx - r); x <= Math.min(G - 1, gx + r); x++)
        for (const i of grid[y * G + x]) {
          const dx = Math.abs(xy[2 * i] - wx), dy = Math.abs(xy[2 * i + 1] - wy);
          if (dx <= half && dy <= half && dx + dy < bestD) { best = i; bestD = dx + dy; }
        }
    return best;
  }

  function nameOf(c) { return c < 0 ? "" : clusterings[current].names[String(c)] || ""; }
  function clusterName(c) { return c < 0 ? "unclustered" : "cluster " + c + (nameOf(c) ? " (" + nameOf(c) + ")" : ""); }
  function describe(i) {
    const c = clusterings[current].labels[i], d = clusterings[current].dist[i];
    let text = clusterName(c) + (isNaN(d) ? "" : " · distance to centre " + d.toPrecision(3));
    if (D.tags && D.tags[i].length) text += " · labels: " + D.tags[i].join(", ");
    return text;
  }
  function sprite(node, i, px) {
    const a = Math.floor(i / D.per_atlas), j = i % D.per_atlas, s = px / D.cell;
    node.dataset.atlas = String(a);  // the image arrives when the atlas script has run
    if (atlasUrls[a]) node.style.backgroundImage = 'url("' + atlasUrls[a] + '")';
    node.style.backgroundSize = D.columns * D.cell * s + "px auto";
    node.style.backgroundPosition = -(j % D.columns) * px + "px " + -Math.floor(j / D.columns) * px + "px";
  }

  // Pointer positions relative to the map pane, not the canvas: above LIVE_LIMIT the canvas wears
  // a CSS transform while the view moves, and its bounding rectangle moves and scales with it.
  const pane = $("map-pane");
  function local(e) { const r = pane.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; }
  const tip = $("tooltip");
  let hover = -1;
  function showTip(px, py) {
    const i = pick(px, py);
    if (i !== hover) {
      hover = i;
      tip.hidden = i < 0;
      if (i >= 0) {
        setLink($("tooltip-img"), "src", href(i));   // the original, scaled by the browser
        $("tooltip-path").textContent = D.paths[i];
        $("tooltip-info").textContent = describe(i);
      }
    }
    if (i >= 0) {
      tip.style.left = Math.max(0, Math.min(px + 16, canvas.clientWidth - 280)) + "px";
      tip.style.top = Math.max(0, Math.min(py + 16, canvas.clientHeight - 300)) + "px";
    }
  }
  // Pan, pinch and tap through Pointer Events, one code path for mouse, pen and fingers: the
  // world point under the pointers' centre follows that centre, and their spread scales the zoom.
  const pointers = new Map();  // pointerId → [px, py] of each pointer pressed on the map
  let gesture = null;          // the view and pointers when the set of pointers last changed
  function centre() {
    const pts = [...pointers.values()], mx = pts.reduce((s, p) => s + p[0], 0) / pts.length,
          my = pts.reduce((s, p) => s + p[1], 0) / pts.length;
    return [mx, my, pts.reduce((s, p) => s + Math.hypot(p[0] - mx, p[1] - my), 0) / pts.length];
  }
  function restartGesture() {
    if (!pointers.size) { gesture = null; return; }
    const [mx, my, spread] = centre();
    gesture = { mx, my, spread, world: toWorld(mx, my), zoom: view.zoom, n: pointers.size,
                moved: gesture ? gesture.moved : false, taps: gesture ? gesture.taps : pointers.size };
  }
  function moveTo(world, px, py) {  // put the world point under the pane pixel (px, py)
    const side = cssSide();
    view.x = world[0] - (px - canvas.clientWidth / 2) / side; view.y = world[1] - (py - canvas.clientHeight / 2) / side;
  }
  canvas.addEventListener("pointerdown", (e) => {
    if (e.pointerType === "mouse" && e.button !== 0) return;
    try { canvas.setPointerCapture(e.pointerId); } catch (err) { /* a synthetic event's pointer */ }
    pointers.set(e.pointerId, local(e));
    if (pointers.size === 1) gesture = null;
    restartGesture();
    gesture.taps = Math.max(gesture.taps, pointers.size);
    canvas.style.cursor = "grabbing";
  });
  canvas.addEventListener("pointermove", (e) => {
    const [px, py] = local(e);
    if (!pointers.has(e.pointerId)) { if (e.pointerType === "mouse") showTip(px, py); return; }
    pointers.set(e.pointerId, [px, py]);
    const [mx, my, spread] = centre();
    gesture.moved = gesture.moved || Math.abs(mx - gesture.mx) + Math.abs(my - gesture.my) > 4 || gesture.n > 1;
    if (gesture.n > 1 && gesture.spread > 0) view.zoom = Math.min(400, Math.max(0.3, gesture.zoom * spread / gesture.spread));
    moveTo(gesture.world, mx, my);
    tip.hidden = true; hover = -1;
    viewChanged();
  });
  function release(e) {
    if (!pointers.has(e.pointerId)) return;
    const tap = e.type === "pointerup" && gesture && !gesture.moved && gesture.taps === 1;
    pointers.delete(e.pointerId);
    restartGesture();
    canvas.style.cursor = "grab";
    if (tap) {
      const i = pick(...local(e));
      if (i >= 0) select(i);  // as a thumbnail click: the photo and its neighbours, in this page
    }
  }
  canvas.addEventListener("pointerup", release);
  canvas.addEventListener("pointercancel", release);
  canvas.addEventListener("pointerleave", (e) => { if (e.pointerType === "mouse") { tip.hidden = true; hover = -1; } });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    zoomAt(Math.exp(-e.deltaY * 0.0015), ...local(e));
  }, { passive: false });
  function zoomAt(factor, px, py) {  // zoom by factor, keeping the world point under (px, py) in place
    const world = toWorld(px, py);
    view.zoom = Math.min(400, Math.max(0.3, view.zoom * factor));
    moveTo(world, px, py);
    viewChanged();
  }
  // Keyboard: the map takes focus; arrows pan by a tenth of the map, + and − zoom about the
  // centre, 0 resets, Enter selects the photo at the centre. The buttons do the same by pointer.
  function resetView() { view.x = 0.5; view.y = 0.5; view.zoom = 1; requestDraw(); }
  const zoomCentre = (factor) => zoomAt(factor, canvas.clientWidth / 2, canvas.clientHeight / 2);
  canvas.addEventListener("keydown", (e) => {
    const step = Math.min(canvas.clientWidth, canvas.clientHeight) / 10 / cssSide();
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (moves[e.key]) { view.x += moves[e.key][0]; view.y += moves[e.key][1]; viewChanged(); }
    else if (e.key === "+" || e.key === "=") zoomCentre(1.5);
    else if (e.key === "-" || e.key === "_") zoomCentre(1 / 1.5);
    else if (e.key === "0") resetView();
    else if (e.key === "Enter") { const i = pick(canvas.clientWidth / 2, canvas.clientHeight / 2); if (i >= 0) select(i); }
    else return;
    e.preventDefault();
  });
  $("zoom-in").addEventListener("click", () => zoomCentre(1.5));
  $("zoom-out").addEventListener("click", () => zoomCentre(1 / 1.5));
  $("zoom-reset").addEventListener("click", resetView);
  $("cluster-jump").addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    e.preventDefault();  // else the Enter also presses the cluster's button, which takes the focus
    const label = Number(e.target.value);
    if (e.target.value !== "" && Number.isInteger(label) && document.querySelector('.cluster[data-cluster="' + label + '"]')) {
      e.target.setCustomValidity(""); focusCluster(label);
    } else { e.target.setCustomValidity("no such cluster"); e.target.reportValidity(); }
  });
  canvas.addEventListener("dblclick", () => resetView());
  window.addEventListener("resize", requestDraw);

  // ------------------------------------------------------------------ galleries
  const GALLERY_SHOWN = 24;
  function groups(inRange = true) {  // [cluster, its photos nearest the centre first], in the date range
    const c = clusterings[current], members = new Map();
    for (let i = 0; i < N; i++) {
      if (inRange && dateOk && !dateOk[i]) continue;
      const l = c.labels[i];
      if (!members.has(l)) members.set(l, []);
      members.get(l).push(i);
    }
    for (const list of members.values()) list.sort((a, b) => (c.dist[a] || 0) - (c.dist[b] || 0) || a - b);
    return [...members.keys()].sort((a, b) => (a < 0) - (b < 0) || a - b).map((l) => [l, members.get(l)]);
  }
  function caption(list) {
    if (!D.tags) return "";
    const counts = new Map();
    for (const i of list) for (const w of D.tags[i].slice(0, 3)) counts.set(w, (counts.get(w) || 0) + 1);
    return [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 4).map(([w, n]) => w + " (" + n + ")").join(", ");
  }
  function thumbButton(i, c) {
    const b = el("button", { class: "thumb", title: D.paths[i], "data-index": String(i), "aria-label": D.paths[i] });
    b.style.backgroundColor = "#333";
    b.style.setProperty("--c", colour(c));
    sprite(b, i, 60);
    b.addEventListener("click", () => select(i));
    return b;
  }
  // A grid that grows a page at a time behind a "more" button: a 16,000-photo cluster or search
  // costs the page PAGE elements, not 16,000. colourOf(i) frames each thumbnail.
  const PAGE = 120;
  function pagedGrid(box, grid, list, colourOf, first) {
    box.querySelectorAll(":scope > .more").forEach((b) => b.remove());
    grid.replaceChildren();
    let shown = 0;
    const more = el("button", { class: "more" });
    function grow(count) {
      const next = list.slice(shown, shown + count);
      grid.append(...next.map((i) => thumbButton(i, colourOf(i))));
      shown += next.length;
      more.textContent = "show " + Math.min(PAGE, list.length - shown) + " more (" + shown + " of " + list.length + " shown)";
      if (shown >= list.length) more.remove();
    }
    more.addEventListener("click", () => grow(PAGE));
    box.append(more);
    grow(first);
  }
  function renderGalleries() {
    const root = $("galleries"), c = clusterings[current];
    root.replaceChildren();
    const lists = groups(), all = dateOk ? groups(false) : lists;
    const totals = new Map(all.map(([label, list]) => [label, list.length]));
    for (const [label, list] of lists) {
      const box = el("div", { class: "cluster", "data-cluster": String(label) });
      box.style.setProperty("--c", colour(label));
      const head = el("button", { class: "cluster-head" }, (label < 0 ? "Unclustered" : "Cluster " + label) +
                      (nameOf(label) ? " · " + nameOf(label) : "") + " · " + list.length + " photo" + (list.length === 1 ? "" : "s") +
                      (dateOk ? " in the date range (of " + totals.get(label) + ")" : ""));
      const cap = el("div", { class: "caption" }, caption(list));
      const g = el("div", { class: "grid" });
      box.append(head, cap, g);
      pagedGrid(box, g, list, () => label, GALLERY_SHOWN);
      head.addEventListener("click", () => highlight(label === highlighted ? null : label, box, g, list));
      root.append(box);
    }
    renderLegend(all);
    renderLabels();
    const k = c.k, un = c.labels.filter((l) => l < 0).length;
    $("cluster-count").textContent = k + " cluster" + (k === 1 ? "" : "s") + (un ? " + " + un + " unclustered" : "");
  }
  function focusCluster(label) {  // highlight a cluster and bring its gallery into view
    const box = document.querySelector('.cluster[data-cluster="' + label + '"]');
    if (!box) return;
    showTab("clusters");
    if (highlighted !== label) box.querySelector(".cluster-head").click();
    box.scrollIntoView({ block: "start" });
    box.querySelector(".cluster-head").focus({ preventScroll: true });
  }
  function highlight(label, box, g, list) {
    highlighted = label;
    document.querySelectorAll(".cluster.active").forEach((b) => b.classList.remove("active"));
    if (label !== null) {
      box.classList.add("active");
      pagedGrid(box, g, list, () => label, PAGE);   // nearest the centre first, a page at a time
      $("highlight").textContent = "highlighted: " + clusterName(label) + ", " + list.length + " photos";
    } else $("highlight").textContent = "";
    recolour();
  }

  // ------------------------------------------------------------------ the k control and its curves
  const select_k = $("k-select");
  // The menu lists the real result apart from the k-means partitions kept for comparing k.
  const menuGroups = new Map();
  clusterings.forEach((c, j) => {
    let parent = select_k;
    if (c.group) {
      if (!menuGroups.has(c.group)) select_k.append(menuGroups.set(c.group, el("optgroup", { label: c.group })).get(c.group));
      parent = menuGroups.get(c.group);
    }
    parent.append(el("option", { value: String(j) }, c.name));
  });
  if (D.clusteringNote) { $("clustering-note").textContent = D.clusteringNote; select_k.title = D.clusteringNote; }
  function showKind() {
    const c = clusterings[current];
    $("clustering-kind").textContent = !c.group ? "" : c.group === D.resultGroup ? "the result" : "a comparison, not the result";
  }
  select_k.value = String(current);
  select_k.addEventListener("change", () => setClustering(Number(select_k.value)));
  function setClustering(j) {
    current = j; highlighted = null; $("highlight").textContent = "";
    select_k.value = String(j);
    renderGalleries(); recolour(); drawCharts(); showKind(); drawTimeline();
    if (selected >= 0) select(selected, false);  // refresh its details, leave the tab in front
  }
  function drawCharts() {
    const S = D.sweep, root = $("k-charts");
    root.replaceChildren();
    if (!S) { $("k-note").textContent = "No k sweep: run imgclust find-k."; return; }
    $("k-note").textContent = S.note + " Click a curve to show that k.";
    const shown = clusterings[current].k;
    const MARKS = ["#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#e377c2"];
    const NS = "http://www.w3.org/2000/svg";
    for (const curve of S.curves) {
      const W = 560, H = 150, L = 50, R = 10, T = 18, B = 22;
      const svg = document.createElementNS(NS, "svg");
      svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("width", "100%"); svg.setAttribute("class", "chart");
      const pts = curve.ks.map((k, i) => [k, curve.values[i]]).filter((p) => p[1] !== null);
      const kmin = S.ks[0], kmax = S.ks[S.ks.length - 1] === kmin ? kmin + 1 : S.ks[S.ks.length - 1];
      const vals = pts.map((p) => p[1]), lo = Math.min(...vals), hi = Math.max(...vals) === lo ? lo + 1 : Math.max(...vals);
      const X = (k) => L + ((k - kmin) / (kmax - kmin)) * (W - L - R), Y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
      const add = (tag, attrs, text) => { const e = document.createElementNS(NS, tag); for (const a in attrs) e.setAttribute(a, attrs[a]); if (text !== undefined) e.textContent = text; svg.append(e); return e; };
      add("text", { x: L, y: 12 }, curve.title);
      add("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#666" });
      add("text", { x: L, y: H - 6 }, "k = " + kmin); add("text", { x: W - R - 50, y: H - 6 }, "k = " + kmax);
      if (pts.length) { add("text", { x: 2, y: T + 8 }, hi.toPrecision(3)); add("text", { x: 2, y: H - B }, lo.toPrecision(3)); }
      S.marks.forEach(([name, k], j) => add("line", { x1: X(k), x2: X(k), y1: T, y2: H - B, stroke: MARKS[j % MARKS.length], "stroke-dasharray": "4 3" })
        .append(Object.assign(document.createElementNS(NS, "title"), { textContent: name + " k = " + k })));
      if (shown) add("line", { x1: X(shown), x2: X(shown), y1: T, y2: H - B, stroke: "#fff", "stroke-width": 2 });
      if (pts.length) add("polyline", { points: pts.map((p) => X(p[0]) + "," + Y(p[1])).join(" "), fill: "none", stroke: "#4aa3ff", "stroke-width": 1.5 });
      svg.addEventListener("click", (e) => {
        const r = svg.getBoundingClientRect(), k = Math.round(kmin + ((e.clientX - r.left) / r.width * W - L) / (W - L - R) * (kmax - kmin));
        const j = clusterings.findIndex((c) => c.k === k && !c.current);
        if (j >= 0) setClustering(j);
      });
      root.append(svg);
    }
    const legend = el("p", { class: "caption" });
    S.marks.forEach(([name, k], j) => { const m = el("span", {}, "┆ " + name + " k = " + k + "  "); m.style.color = MARKS[j % MARKS.length]; legend.append(m); });
    legend.append(el("span", {}, "│ shown k = " + shown));
    root.append(legend);
  }

  // ------------------------------------------------------------------ dates: a timeline and a range filter
  // Days since 1970 (EXIF date taken, else the file's time; NaN unknown). The range dims the map's
  // photos outside it and keeps them out of the galleries.
  const days = D.days ? decode(D.days, Float32Array) : null;
  let dateOk = null;  // Uint8Array: 1 where a photo is in the chosen range, or null (no range)
  const dayText = (d) => new Date(Math.round(d) * 86400000).toISOString().slice(0, 10);
  const dayOf = (text) => (text ? Date.parse(text + "T00:00:00Z") / 86400000 : NaN);
  function applyDates() {
    const from = dayOf($("date-from").value), to = dayOf($("date-to").value);
    let inside = 0;
    if (isNaN(from) && isNaN(to)) dateOk = null;
    else {
      dateOk = new Uint8Array(N);
      for (let i = 0; i < N; i++) {
        const d = days[i];
        dateOk[i] = !isNaN(d) && (isNaN(from) || d >= from) && (isNaN(to) || d < to + 1) ? 1 : 0;
        inside += dateOk[i];
      }
    }
    $("date-count").textContent = dateOk ? inside + " of " + N + " photos in the range (bright on the map; the galleries show only them)" : "";
    highlighted = null; $("highlight").textContent = "";
    renderGalleries(); recolour(); drawTimeline();
  }
  function drawTimeline() {
    const root = $("timeline");
    if (!days) return;
    root.replaceChildren();
    let lo = Infinity, hi = -Infinity;
    for (const d of days) if (!isNaN(d)) { lo = Math.min(lo, d); hi = Math.max(hi, d); }
    if (lo === Infinity) { root.append(el("p", {}, "No dates.")); return; }
    const B = 60, width = Math.max((hi - lo) / B, 1 / 24), labels = clusterings[current].labels;
    const bins = Array.from({ length: B }, () => new Map());
    for (let i = 0; i < N; i++) {
      if (isNaN(days[i])) continue;
      const b = bins[Math.min(B - 1, Math.floor((days[i] - lo) / width))];
      b.set(labels[i], (b.get(labels[i]) || 0) + 1);
    }
    const most = Math.max(...bins.map((b) => [...b.values()].reduce((s, v) => s + v, 0)));
    const NS = "http://www.w3.org/2000/svg", W = 560, H = 160, L = 6, T = 6, Bm = 20, bw = (W - 2 * L) / B;
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("width", "100%"); svg.setAttribute("id", "timeline-chart");
    const add = (parent, tag, attrs, text) => { const e = document.createElementNS(NS, tag); for (const a in attrs) e.setAttribute(a, attrs[a]); if (text !== undefined) e.textContent = text; parent.append(e); return e; };
    bins.forEach((b, j) => {
      const g = add(svg, "g", { class: "bin" });
      let y = H - Bm;
      for (const label of [...b.keys()].sort((p, q) => (p < 0) - (q < 0) || p - q)) {
        const h = (b.get(label) / most) * (H - Bm - T);
        add(g, "rect", { x: L + j * bw, y: y - h, width: Math.max(bw - 1, 1), height: h, fill: colour(label), "data-cluster": String(label) });
        y -= h;
      }
      const start = lo + j * width, total = [...b.values()].reduce((s, v) => s + v, 0);
      add(g, "title", {}, dayText(start) + " – " + dayText(start + width) + ": " + total + " photos");
      g.addEventListener("click", () => {  // keep this bar's dates
        $("date-from").value = dayText(Math.floor(start)); $("date-to").value = dayText(Math.floor(start + width)); applyDates();
      });
    });
    add(svg, "text", { x: L, y: H - 5 }, dayText(lo));
    add(svg, "text", { x: W - L - 70, y: H - 5 }, dayText(hi));
    root.append(svg);
  }
  if (days) {
    $("dates-button").hidden = false;
    for (const id of ["date-from", "date-to"]) $(id).addEventListener("change", applyDates);
    $("date-clear").addEventListener("click", () => { $("date-from").value = $("date-to").value = ""; applyDates(); });
  }

  // ------------------------------------------------------------------ search, selection, neighbours
  $("search").addEventListener("input", () => {
    const q = $("search").value.trim().toLowerCase(), box = $("search-results");
    if (!q) { matches = null; box.hidden = true; $("search-count").textContent = ""; recolour(); return; }
    matches = new Uint8Array(N);
    const hits = [];
    for (let i = 0; i < N; i++) {
      if (D.paths[i].toLowerCase().includes(q) || (D.tags && D.tags[i].some((w) => w.toLowerCase().includes(q)))) {
        matches[i] = 1; hits.push(i);
      }
    }
    $("search-count").textContent = hits.length + " match" + (hits.length === 1 ? "" : "es");
    const g = el("div", { class: "grid" });
    box.replaceChildren(el("h3", {}, "Search: " + hits.length + " photos (shown bright on the map)"), g);
    pagedGrid(box, g, hits, (i) => clusterings[current].labels[i], 60);
    box.hidden = false;
    showTab("clusters");
    recolour();
  });

  function select(i, show = true) {
    selected = i;
    document.querySelectorAll(".thumb.selected").forEach((b) => b.classList.remove("selected"));
    $("photo-empty").hidden = true; $("photo").hidden = false;
    setLink($("photo-img"), "src", href(i));
    $("photo-path").textContent = D.paths[i];
    $("photo-info").textContent = describe(i);
    setLink($("photo-open"), "href", href(i));
    if (D.portable) $("photo-open").textContent = "Open the preview (a portable report holds no originals)";
    const list = $("neighbours");
    list.replaceChildren();
    if (nb) {
      for (let j = 0; j < nb.m; j++) {
        const n = nb.index[i * nb.m + j], cell = el("div");
        cell.append(thumbButton(n, clusterings[current].labels[n]), el("div", { class: "sim" }, nb.sim[i * nb.m + j].toFixed(3)));
        list.append(cell);
      }
    } else list.append(el("p", {}, "No neighbours stored."));
    if (show) showTab("photo");
    recolour();
  }

  function showTab(name) {
    document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
    document.querySelectorAll(".tab").forEach((t) => (t.hidden = t.id !== "tab-" + name));
  }
  document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));

  // ------------------------------------------------------------------ start
  if (innerWidth < 760) $("legend").open = false;  // a phone's map is small: the legend waits for a tap
  if (gl) setupGL();
  else $("map-status").append(el("b", {}, " WebGL is not available in this browser: the map cannot be drawn."));
  $("map-count").textContent = N + " photos on the map";
  renderGalleries();
  recolour();
  drawCharts();
  showKind();
  drawTimeline();
  requestDraw();

  // For tests and the benchmark: state a person could see, and a way to time frames.
  window.imgclustReport = {
    pointCount: N,
    atlasesLoaded: () => atlasesLoaded,
    atlasCount: D.atlases.length,
    clusterCount: () => clusterings[current].k,
    colourOf: (c) => colour(c),
    brightCount: () => { let n = 0; for (let i = 0; i < N; i++) n += (highlighted === null || clusterings[current].labels[i] === highlighted) &&
                           (!matches || matches[i]) && (!dateOk || dateOk[i]) ? 1 : 0; return n; },
    panFrames(frames) {  // draw `frames` frames while panning; returns ms per frame (GPU work included)
      const px = new Uint8Array(4), t0 = performance.now();
      for (let f = 0; f < frames; f++) {
        view.x = 0.5 + 0.2 * Math.sin(f / 10); view.y = 0.5 + 0.2 * Math.cos(f / 10);
        draw(); gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
      }
      return (performance.now() - t0) / frames;
    },
    screenPosition(path) {  // page pixel position of a photo's point on the map
      const i = D.paths.indexOf(path), r = pane.getBoundingClientRect();
      const side = cssSide();
      return [r.left + canvas.clientWidth / 2 + (xy[2 * i] - view.x) * side,
              r.top + canvas.clientHeight / 2 + (xy[2 * i + 1] - view.y) * side];
    },
    setView(x, y, zoom) { view.x = x; view.y = y; view.zoom = zoom; draw(); },
    view: () => ({ ...view }),
    frameLog: null,
    startFrameLog() {  // timestamps of the frames the page shows, to measure interaction
      const log = (this.frameLog = []);
      const tick = (t) => { if (this.frameLog === log) { log.push(t); requestAnimationFrame(tick); } };
      requestAnimationFrame(tick);
    },
    stopFrameLog() { const log = this.frameLog; this.frameLog = null; return log; },
  };
  document.body.dataset.ready = "1";
})();
