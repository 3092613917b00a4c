// The report's Duplicates and Outliers tabs, from duplicates_data.js (written by `imgclust duplicates`).
// Loaded before report.js: it adds its nav buttons and tab sections, which report.js then switches
// like its own. Without the data file (duplicates never ran) it adds nothing.
"use strict";
(function () {
  const D = window.IMGCLUST_DUPLICATES;
  const nav = document.querySelector("aside nav");
  if (!D || !nav) return;
  const src = (href) => D.imageBase + href;

  function el(tag, props, children) {
    const node = Object.assign(document.createElement(tag), props || {});
    (children || []).forEach((c) => node.append(c));
    return node;
  }

  function tab(name, label) {
    nav.append(el("button", { textContent: label }, []));
    nav.lastChild.dataset.tab = name;
    const section = el("section", { id: "tab-" + name, className: "tab", hidden: true });
    nav.parentNode.append(section);
    return section;
  }

  // Full size, side by side: the keeper and the photo clicked (click anywhere to close).
  const overlay = el("div", { id: "dup-overlay", hidden: true });
  document.body.append(overlay);
  overlay.addEventListener("click", () => (overlay.hidden = true));
  function compare(items) {
    overlay.replaceChildren(...items.map(([href, caption]) =>
      el("figure", {}, [el("img", { src: src(href), alt: caption }), el("figcaption", { className: "path", textContent: caption })])));
    overlay.hidden = false;
  }

  const dups = tab("duplicates", "Duplicates");
  dups.append(el("p", { className: "caption", textContent:
    `${D.groups.length} groups down to “${D.lowestGrade}”${D.shown < D.groups.length ? ` (the first ${D.shown} shown)` : ""}. ` +
    `Keeper (first, outlined): ${D.keeperRule}. Click a photo to see it beside the keeper at full size. Nothing is deleted.` }));
  D.groups.slice(0, D.shown).forEach((g, i) => {
    const grid = el("div", { className: "grid" });
    const keeper = g.members[0];
    g.members.forEach(([path, href, grade, sim], j) => {
      const img = el("img", { className: "dup-thumb" + (j === 0 ? " keeper" : ""), src: src(href), loading: "lazy",
        title: `${path}\n${j === 0 ? "keeper" : grade + ", similarity " + sim.toFixed(3)}` });
      img.addEventListener("click", () => compare(j === 0 ? [[href, path + " (keeper)"]]
        : [[keeper[1], keeper[0] + " (keeper)"], [href, `${path} (${grade}, ${sim.toFixed(3)})`]]));
      grid.append(img);
    });
    dups.append(el("div", { className: "dup-group" }, [
      el("div", { className: "cluster-head", textContent: `group ${i} · ${g.grade} · ${g.members.length} photos` }), grid]));
  });

  const odd = tab("outliers", "Outliers");
  odd.append(el("p", { className: "caption", textContent:
    `The ${D.outliers.length} most unusual photos: score = cosine distance to the ${D.outlierK}th nearest photo. Click to compare with its nearest.` }));
  const grid = el("div", { className: "grid" });
  D.outliers.forEach(([path, href, score, nearPath, nearHref]) => {
    const img = el("img", { className: "dup-thumb", src: src(href), loading: "lazy", title: `${path}\nscore ${score.toFixed(3)}` });
    img.addEventListener("click", () => compare([[href, `${path} (score ${score.toFixed(3)})`], [nearHref, nearPath + " (nearest)"]]));
    grid.append(el("div", {}, [img, el("div", { className: "sim", textContent: score.toFixed(3) })]));
  });
  odd.append(grid);

})();
