// Edit controls of the report: rename a cluster, select photos and move them to a cluster, merge,
// split, undo. Served by `imgclust serve`, each control is a POST to api/edit, which runs the same
// library call as `imgclust edit`; the panel redraws from the state the server returns.
// Opened from disk (a static report given window.IMGCLUST_COLLECTION), the controls change only a
// copy in the page, and "Export edits" saves them as a file for `imgclust edit apply FILE`.
// Additive: it touches report.js's data only to point photo URLs at the server.
"use strict";
(function () {
  const served = location.protocol === "http:" || location.protocol === "https:";
  if (served && window.IMGCLUST_REPORT) window.IMGCLUST_REPORT.imageBase = "photos/";
  const imageBase = () => (served ? "photos/" : (window.IMGCLUST_REPORT || {}).imageBase || "");

  let state = null;             // {clusters: [{id, name, auto_name, photos: [{path, href}]}], ...}
  const made = [];              // per control used, its edits in imgclust edit apply's format
  const earlier = [];           // static report: the page's copy before each control, for Undo
  const flat = () => made.flat();
  const selected = new Set();   // photo paths

  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  };
  const label = (c) => `${c.id}${c.name ? " · " + c.name : c.auto_name ? " · (" + c.auto_name + ")" : ""}`;
  const say = (text) => { document.getElementById("edit-status").textContent = text; };

  async function send(edit) {
    if (served) {
      const r = await fetch("api/edit", {method: "POST", headers: {"Content-Type": "application/json"},
                                         body: JSON.stringify(edit)});
      const doc = await r.json();
      if (!r.ok) { say(doc.error || r.statusText); return; }
      state = doc;
      say((doc.lines || []).join(" · ") || `done: ${edit.op}`);
    } else {
      earlier.push(JSON.stringify(state));
      applyLocally(edit);
    }
    // A move of several photos is one edit per photo, as `imgclust edit move` makes them.
    made.push(edit.op === "move" ? edit.photos.map((p) => ({op: "move", photo: p, cluster: edit.cluster})) : [edit]);
    selected.clear();
    render();
  }

  // The static report: the same edits on the page's copy (a split is only recorded: the
  // collection computes it when the file is applied).
  function applyLocally(edit) {
    const find = (c) => state.clusters.find((x) => String(x.id) === String(c) || x.name === c);
    if (edit.op === "rename") find(edit.cluster).name = edit.name || null;
    if (edit.op === "move") {
      const to = find(edit.cluster);
      for (const c of state.clusters) {
        const keep = c.photos.filter((p) => !edit.photos.includes(p.path));
        if (c !== to) to.photos.push(...c.photos.filter((p) => edit.photos.includes(p.path)));
        if (c !== to) c.photos = keep;
      }
    }
    if (edit.op === "merge") {
      const into = find(edit.into), other = find(edit.other);
      into.photos.push(...other.photos);
      state.clusters = state.clusters.filter((c) => c !== other);
    }
    say(`recorded: ${edit.op} (export the edits to apply them)`);
  }

  function exportEdits() {
    const blob = new Blob([JSON.stringify({edits: flat()}, null, 1)], {type: "application/json"});
    const a = el("a", {href: URL.createObjectURL(blob), download: "imgclust-edits.json"});
    document.body.append(a);
    a.click();
    a.remove();
  }

  function options(except) {
    return state.clusters.filter((c) => c.id !== except).map((c) => el("option", {value: c.id}, label(c)));
  }

  function clusterBlock(c) {
    const name = el("input", {type: "text", value: c.name || "", placeholder: c.auto_name || "name",
                              "aria-label": `name of cluster ${c.id}`, class: "edit-name"});
    const other = el("select", {"aria-label": `merge into cluster ${c.id}`, class: "edit-merge-other"}, ...options(c.id));
    const grid = el("div", {class: "edit-grid"});
    for (const p of c.photos) {
      const img = el("img", {src: imageBase() + p.href, alt: p.path, title: p.path, loading: "lazy",
                             "data-photo": p.path, class: selected.has(p.path) ? "selected" : ""});
      img.addEventListener("click", () => {
        if (selected.has(p.path)) selected.delete(p.path); else selected.add(p.path);
        img.classList.toggle("selected");
        say(`${selected.size} selected`);
      });
      grid.append(img);
    }
    return el("div", {class: "edit-cluster", "data-cluster": c.id},
      el("div", {class: "edit-row"},
        el("b", {}, `${c.id}`), ` ${c.photos.length} photos `, name,
        el("button", {class: "edit-rename", onclick: () => send({op: "rename", cluster: c.id, name: name.value})}, "Rename"),
        el("button", {class: "edit-split", onclick: () => send({op: "split", cluster: c.id, k: 2})}, "Split in 2"),
        other,
        el("button", {class: "edit-merge", onclick: () => send({op: "merge", into: c.id, other: Number(other.value)})},
           "Merge into this")),
      grid);
  }

  function render() {
    const body = document.getElementById("edit-clusters");
    body.replaceChildren(...state.clusters.map(clusterBlock));
    document.getElementById("edit-move-to").replaceChildren(...options(null));
    document.getElementById("edit-count").textContent = `${flat().length} edits in this page`;
  }

  function panel() {
    const target = el("select", {id: "edit-move-to", "aria-label": "cluster to move the selected photos to"});
    const move = () => {
      if (!selected.size) { say("select photos first (click them)"); return; }
      send({op: "move", photos: [...selected], cluster: Number(target.value)});
    };
    const undo = () => {
      if (served) send({op: "undo"});
      else if (made.length) {
        made.pop();
        state = JSON.parse(earlier.pop());
        say("undone (dropped from the export)");
        render();
      }
    };
    const box = el("section", {id: "edit-panel", hidden: ""},
      el("div", {class: "edit-row"},
        el("button", {id: "edit-move", onclick: move}, "Move selected to"), target,
        el("button", {id: "edit-undo", onclick: undo}, "Undo"),
        el("button", {id: "edit-export", onclick: exportEdits}, "Export edits"),
        el("span", {id: "edit-count"}),
        served ? el("a", {href: "index.html"}, "Reload the map") : "",
        el("span", {id: "edit-status", role: "status"})),
      el("div", {id: "edit-clusters"}));
    const toggle = el("button", {id: "edit-toggle", onclick: () => { box.hidden = !box.hidden; }}, "Edit clusters");
    document.body.append(toggle, box);
  }

  async function start() {
    if (served) {
      const r = await fetch("api/state");
      if (!r.ok) return;
      state = await r.json();
    } else if (window.IMGCLUST_COLLECTION) {
      state = window.IMGCLUST_COLLECTION;
    } else {
      return;   // a static report without the collection's clusters: nothing to edit
    }
    panel();
    render();
    document.body.dataset.editReady = "1";
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
