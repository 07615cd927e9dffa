// The report page: no framework, no network. Data: the JSON in #report-data (clipscore_sr/report/data.py);
// thumbnails: JPEG sprite sheets in <script id="sheet-N"> elements, turned into CSS rules / images on first use.
(() => {
  "use strict";
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const num = (v) => (v === null || v === undefined ? NaN : v === "inf" ? Infinity : v === "-inf" ? -Infinity : Number(v));
  const fmt = (v, d) => { v = num(v); if (Number.isNaN(v)) return "–"; if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
    return d !== undefined ? v.toFixed(d) : Math.abs(v) >= 100 ? v.toFixed(2)
      : v !== 0 && Math.abs(v) < 1e-3 ? v.toPrecision(3) : v.toFixed(4); };  // 7.37e-6, never a flagged 0.0000
  const dv = (v) => (v === null || v === undefined ? "" : String(v));  // the exact value, for readers of the DOM
  const R = D.rows, N = R.key.length, CAP = D.thumb_cap, RH = 36, TS = 32 / CAP;
  const M = D.metrics.map((m) => m.id), HIGH = Object.fromEntries(D.metrics.map((m) => [m.id, m.higher]));
  const V = Object.fromEntries(M.map((m) => [m, Float64Array.from(R.values[m], num)]));
  V.disagree = Float64Array.from(R.disagree, num);
  $("title").textContent = D.title; $("built").textContent = `clipscore-sr ${D.version}, built ${D.built || ""}`;

  // ---------- overview ----------
  function tableHtml(cols, rows, pick) {
    const head = "<tr>" + cols.map((c) => `<th>${esc(c.label)}</th>`).join("") + "</tr>";
    return "<table>" + head + rows.map((r) => "<tr>" + cols.map((c) => c.td(pick(r))).join("") + "</tr>").join("") + "</table>";
  }
  const tdv = (v, d, cls) => `<td data-v="${esc(dv(v))}"${cls ? ` class="${cls}"` : ""}>${typeof v === "string" && Number.isNaN(num(v)) ? esc(v) : fmt(v, d)}</td>`;
  function rankTable(t, cls) {
    const c = t.columns, ix = (n) => c.indexOf(n);
    return tableHtml([{ label: "dataset", td: (r) => `<td>${esc(r[ix("dataset")])}</td>` },
      { label: "rank", td: (r) => tdv(r[ix("rank")], 0) }, { label: "method", td: (r) => `<td class="method">${esc(r[ix("method")])}</td>` },
      { label: "score", td: (r) => tdv(r[ix("score")], 3, "score") }, { label: "CI low", td: (r) => tdv(r[ix("ci_low")], 3, "lo") },
      { label: "CI high", td: (r) => tdv(r[ix("ci_high")], 3, "hi") }, { label: "wins", td: (r) => tdv(r[ix("wins")], 1) },
      { label: "losses", td: (r) => tdv(r[ix("losses")], 1) }, { label: "ties", td: (r) => tdv(r[ix("ties")], 1) },
      { label: "votes", td: (r) => tdv(r[ix("n_votes")], 0, "votes") },
      { label: "note", td: (r) => `<td>${esc(r[ix("ci_note")] || "")}</td>` }], t.rows, (r) => r)
      .replace("<table>", `<table class="${cls}" data-file="${esc(t.file)}">`);
  }
  const fmtAuto = (v) => (typeof v === "number" && Number.isInteger(v) ? String(v) : fmt(v));
  const isText = (v) => typeof v === "string" && (v === "" || Number.isNaN(num(v)));  // "inf"/"-inf" are numbers
  const fmtCoord = (v) => (v === null ? "–" : String(Number(num(v).toPrecision(10))));  // map coordinates: 10 digits
  // a table whose header sorts it (click again: reverse; missing values last); every cell carries its value
  function sortableHtml(t, cls, attrs, fmtCell) {
    return `<div class="wide"><table class="sortable ${cls}" ${attrs}><thead><tr>` + t.columns.map((c, i) => `<th data-i="${i}" data-col="${esc(c)}">${esc(c)}</th>`).join("") +
      "</tr></thead><tbody>" + t.rows.map((r) => "<tr>" + r.map((v, i) => `<td data-col="${esc(t.columns[i])}" data-v="${esc(dv(v))}"` +
      `${isText(v) ? " class='txt'" : ""}>${fmtCell ? fmtCell(t.columns[i], v) : isText(v) ? esc(v) : fmtAuto(v)}</td>`).join("") + "</tr>").join("") +
      "</tbody></table></div>";
  }
  document.addEventListener("click", (ev) => {
    const th = ev.target.closest && ev.target.closest("table.sortable th"); if (!th) return;
    const table = th.closest("table"), i = +th.dataset.i, body = table.tBodies[0], rows = [...body.rows];
    const desc = th.classList.contains("sorted") && !th.classList.contains("desc"), s = desc ? -1 : 1;
    const val = (tr) => tr.cells[i].dataset.v, missing = (v) => v === "" || v === undefined;
    const numeric = rows.every((tr) => missing(val(tr)) || !Number.isNaN(num(val(tr))));
    const pos = new Map(rows.map((tr, k) => [tr, k]));
    rows.sort((a, b) => { const x = val(a), y = val(b);
      if (missing(x) || missing(y)) return missing(x) && missing(y) ? pos.get(a) - pos.get(b) : missing(x) ? 1 : -1;
      const d = numeric ? num(x) - num(y) : x < y ? -1 : x > y ? 1 : 0; return d ? s * d : pos.get(a) - pos.get(b); });
    for (const c of th.parentNode.cells) c.classList.remove("sorted", "desc");
    th.classList.add("sorted"); th.classList.toggle("desc", desc);
    body.append(...rows);
  });

  // ---------- study ----------
  function progressHtml(s) {
    const k = s.kinds;
    return `<b data-k="answers">${s.answers}</b> answer(s) from <b data-k="annotators">${s.annotators}</b> annotator(s), ` +
      `<b data-k="finished">${s.finished}</b> finished; <b data-k="trials">${s.trials}</b> trials per annotator ` +
      `(${k.real} real, ${k.sentinel} sentinel, ${k.repeat} repeat${s.allow_tie ? "; ties allowed" : ""}` +
      `${s.design === "active" ? "; active design: the server chose each real trial" : ""}); methods ${esc(s.methods.join(", "))}.`;
  }
  const STATUS = { answers: "answers", real: "real", sentinels: "sentinels", sentinel_correct: "sentinels ok", sentinel_accuracy: "sentinel accuracy",
    repeats: "repeats", repeat_consistent: "repeats same", repeat_consistency: "repeat consistency", median_rt_s: "median RT s",
    time_spent_min: "time min", loo_agreement: "agrees w/ others", flagged: "flagged", reason: "reason" };
  function statusCell(col, v) {
    if (v === null) return "–";
    if (/accuracy|consistency|agreement/.test(col)) return fmt(100 * num(v), 1) + "%";
    if (col === "median_rt_s" || col === "time_spent_min") return fmt(v, 2);
    if (col === "flagged") return v ? "<b class='flag'>FLAGGED</b>" : "";
    return typeof v === "number" ? fmtAuto(v) : esc(v);
  }
  function studyHtml(s, n) {
    let h = `<div class="study" data-n="${n}"><h2>Study ${esc(s.dataset)} <span class="hint">${esc(s.folder)}</span></h2><p class="progress">${progressHtml(s)}</p>`;
    if (s.status) {
      const t = { columns: s.status.columns, rows: s.status.rows };
      h += "<h3>Per annotator (as <code>srmetrics study status</code> computes it)</h3>" + sortableHtml(t, "status", "", statusCell)
        .replace(/<th data-i="(\d+)" data-col="([^"]*)">[^<]*<\/th>/g, (m, i, c) => `<th data-i="${i}" data-col="${c}">${esc(STATUS[c] || c)}</th>`);
      h += `<p class="hint">Sentinels: the GT shown against a degraded copy (a wrong answer or a tie fails); flagged: sentinel accuracy below 80%; ` +
        `repeats: a trial shown again with the sides swapped. RT: response time.</p>`;
    }
    if (s.reliability) {
      const r = s.reliability;
      h += `<p class="reliability" data-alpha="${esc(dv(r.krippendorff_alpha))}" data-lo="${esc(dv(r.krippendorff_alpha_ci && r.krippendorff_alpha_ci[0]))}"` +
        ` data-hi="${esc(dv(r.krippendorff_alpha_ci && r.krippendorff_alpha_ci[1]))}">${esc(r.text)}</p>`;
    }
    const model = s.model === "thurstone" ? "Thurstone (JOD)" : "Bradley-Terry (logits)";
    const cmd = s.model === "thurstone" ? "srmetrics rank judgements.csv --model thurstone" : "srmetrics rank judgements.csv";
    if (s.ranking) h += `<h3>Ranking from its answers (as <code>${cmd}</code> computes it: ${model}, ties split, ` +
      "95% CIs from 1000 bootstrap resamples of scenes &times; annotators, seed 0)</h3>" + rankTable(s.ranking, "rank study-rank");
    if (s.notes.length) h += "<ul>" + s.notes.map((x) => `<li class="note">${esc(x)}</li>`).join("") + "</ul>";
    return h + "</div>";
  }

  // ---------- scene ----------
  const flaggedText = (c) => Object.entries(c.flagged).map(([k, v]) => `${k} ${v}`).join(", ") || "none";
  function sceneHtml(e, n) {
    const st = e.settings || {}, th = st.thresholds || {};
    let h = `<div class="scene-eval" data-n="${n}"><h2>Scene evaluation <span class="hint">${esc(e.folder)}</span></h2>` +
      `<p>Tiles of <b>${esc(dv(st.tile))}</b> LR px; bands ${esc(st.bands ? st.bands.join(",") : "all")}; data range ${esc(dv(st.data_range) || "from the LR type")}; ` +
      `offset ${esc(dv(st.offset))}; flags: seam &gt; ${esc(dv(th.seam))}, cast &gt; ${esc(dv(th.cast))}, shift &gt; ${esc(dv(th.shift))} LR px. ` +
      `${esc(dv(e.n_tiles))} tiles in <code>${esc(e.table)}</code>.</p>`;
    for (const c of e.scenes) {
      const m = c.map;
      h += `<section class="one-scene" data-scene="${esc(c.name)}"><h3>${esc(c.name)}</h3><p>LR <code>${esc(c.lr)}</code> &rarr; SR <code>${esc(c.sr)}</code>, ` +
        `&times;${esc(dv(c.scale))}. ` + (m ? `Map: <a href="${esc(encodeURI(m.file))}">${esc(m.file)}</a> ` + (m.error ? `(cannot describe it: ${esc(m.error)}).</p>` :
        `(COG, ${m.size[0]}&times;${m.size[1]} px, ${m.crs ? "CRS " + esc(m.crs) : "pixel coordinates: not georeferenced"}).</p>` +
        `<details class="bands"><summary>its ${m.bands.length} bands, one per score</summary>${esc(m.bands.join(", "))}</details>`) : "no map.</p>");
      h += `<div class="scene-row">`;
      if (c.quicklook) h += `<figure><img class="quicklook" alt="quick-look of ${esc(c.name)}" src="${c.quicklook}"><figcaption>Quick-look: the LR with one display stretch; ` +
        `flagged tiles outlined in red, else the worst by lr-l1 in yellow.</figcaption></figure>`;
      h += `<table class="aggregate" data-scene="${esc(c.name)}"><tr><th>scene aggregate</th><th>value</th></tr>` + Object.entries(c.aggregate).map(([k, v]) =>
        `<tr><td>${esc(k)}</td><td data-k="${esc(k)}" data-v="${esc(dv(v))}">${fmtAuto(v)}</td></tr>`).join("") + "</table></div>";
      h += `<p>Flagged tiles: <span class="flagged">${esc(flaggedText(c))}</span>.` + (c.errors.length ? ` <span class="note">Errors: ${esc(c.errors.join("; "))}</span>` : "") + "</p>";
      h += `<h4>Worst tiles (the 5 worst per ${esc(c.rankings.join(", "))}, and the flagged ones)</h4>` +
        sortableHtml(c.worst, "worst", `data-scene="${esc(c.name)}"`, (col, v) => (/^[xy]_(min|max)$/.test(col) ? fmtCoord(v) : isText(v) ? esc(v) : fmtAuto(v))) +
        `<p class="hint">x/y: map coordinates (${m && m.crs ? esc(m.crs) : "pixels"}) of the tile's bounds; row/col offsets, height and width in LR pixels. ` +
        `Click a header to sort.</p></section>`;
    }
    return h + "</div>";
  }

  function overview() {
    let h = "";
    if (D.summary) {
      const c = D.summary.columns, ix = (n) => c.indexOf(n), S = {};
      for (const r of D.summary.rows) S[r[ix("method")] + "\u0001" + r[ix("metric")]] = r;
      h += "<h2>Mean per method and metric, 95% CI</h2><table id='means'><tr><th>method</th>" +
        M.map((m) => `<th>${esc(m)} ${HIGH[m] === null ? "" : HIGH[m] ? "&uarr;" : "&darr;"}</th>`).join("") + "</tr>";
      for (const me of D.methods) {
        h += `<tr><td>${esc(me)}</td>`;
        for (const m of M) {
          const r = S[me + "\u0001" + m]; if (!r) { h += "<td></td>"; continue; }
          const best = (D.best[m] || []).includes(me);
          h += `<td data-method="${esc(me)}" data-metric="${esc(m)}" data-v="${esc(dv(r[ix("mean")]))}" data-lo="${esc(dv(r[ix("ci95_low")]))}"` +
            ` data-hi="${esc(dv(r[ix("ci95_high")]))}" data-n="${r[ix("count")]}"${best ? " class='best'" : ""}>${fmt(r[ix("mean")])}` +
            `<span class="ci">[${fmt(r[ix("ci95_low")])}, ${fmt(r[ix("ci95_high")])}] n=${r[ix("count")]}</span></td>`;
        }
        h += "</tr>";
      }
      h += "</table><p id='best'>Best method per metric: " + Object.entries(D.best).map(([m, b]) =>
        `<b>${esc(m)}</b> <span data-metric="${esc(m)}">${esc(b.join(" = "))}</span>`).join(", ") + "</p>";
    }
    for (const t of D.agreement || []) {
      const c = t.columns, ix = (n) => c.indexOf(n), rows = t.rows;
      const all = rows.filter((r) => r[ix("dataset")] === "all").sort((a, b) => num(a[ix("rank")]) - num(b[ix("rank")]));
      const conf = all.length ? num(all[0][ix("confidence")]) : 0.95;
      const tied = all.filter((r) => r[ix("p_vs_best")] === null || num(r[ix("p_vs_best")]) >= 1 - conf).map((r) => r[ix("metric")]);
      h += `<h2>Agreement with the judgements (${esc(t.file)})</h2>`;
      if (all.length) h += `<p>Best: <b>${esc(all[0][ix("metric")])}</b> (${fmt(100 * num(all[0][ix("accuracy")]), 1)}%); not significantly worse than the best: ${esc(tied.join(", "))}.</p>`;
      h += tableHtml([{ label: "metric", td: (r) => `<td>${esc(r[ix("metric")])}</td>` }, { label: "dataset", td: (r) => `<td>${esc(r[ix("dataset")])}</td>` },
        { label: "accuracy", td: (r) => tdv(r[ix("accuracy")], 4, "acc") }, { label: "CI low", td: (r) => tdv(r[ix("ci_low")], 4) },
        { label: "CI high", td: (r) => tdv(r[ix("ci_high")], 4) }, { label: "human ceiling", td: (r) => tdv(r[ix("human_ceiling")], 4) },
        { label: "rank", td: (r) => tdv(r[ix("rank")], 0) }, { label: "diff vs best", td: (r) => tdv(r[ix("diff_vs_best")], 4) },
        { label: "p vs best", td: (r) => tdv(r[ix("p_vs_best")], 3) }, { label: "pairs", td: (r) => tdv(r[ix("n_pairs")], 0) },
        { label: "note", td: (r) => `<td>${esc((ix("ci_note") >= 0 && r[ix("ci_note")]) || "")}</td>` }],
      rows, (r) => r).replace("<table>", `<table class="agreement" data-file="${esc(t.file)}">`);
    }
    for (const t of D.rank || []) h += `<h2>Ranking from the judgements (${esc(t.file)})</h2>` + rankTable(t, "rank");
    for (const s of D.studies || []) {
      h += `<h2>Study ${esc(s.dataset)}</h2><p>${progressHtml(s)} See the Study tab.</p>`;
      if (s.ranking) h += `<h3>Ranking from its answers</h3>` + rankTable(s.ranking, "rank study-rank-overview");
    }
    for (const e of D.scenes || []) {
      h += `<h2>Scene evaluation (${esc(e.folder)})</h2><p>` + e.scenes.map((c) => `<b>${esc(c.name)}</b>: ${esc(dv(c.aggregate.tiles))} tiles, ` +
        `lr-psnr ${fmt(c.aggregate["lr-psnr"])}, flagged: ${esc(flaggedText(c))}`).join("; ") + ". See the Scene tab.</p>";
    }
    for (const t of D["ranking-agreement"] || []) {
      h += `<h2>Metric rankings vs the judgements' (${esc(t.file)})</h2>` + tableHtml(t.columns.map((n, i) => ({ label: n,
        td: (r) => (typeof r[i] === "number" ? tdv(r[i]) : `<td>${esc(dv(r[i]))}</td>`) })), t.rows, (r) => r);
    }
    if (D.provenance.length) h += "<h2>Provenance</h2>";
    for (const p of D.provenance) {
      if (p.missing) { h += `<p class="note">${esc(p.file)}: no meta file (provenance unknown)</p>`; continue; }
      h += `<h3>${esc(p.file)}</h3><ul class="prov"><li>clipscore-sr ${esc(p.version)}, written ${esc(p.written)}; ${esc(p.n_pairs)} pairs, ${esc(p.n_failed)} failed</li>` +
        `<li>data range <b data-k="data_range">${esc(dv(p.data_range))}</b> (requested: ${esc(dv(p.data_range_requested) || "default")}); bands <b data-k="bands">${esc(p.bands ? p.bands.join(",") : "all")}</b>; device ${esc(p.device)}, ${esc(p.precision)}</li>` +
        `<li>inputs: ${esc(JSON.stringify(p.inputs_range))}</li><li>display: ${esc(p.display)}</li>` +
        `<li>metrics (ids, models, checkpoints, preprocessing):<pre>${esc(JSON.stringify(p.metrics, null, 1))}</pre></li></ul>`;
    }
    if (D.notes.length) h += "<h2>Notes</h2><ul>" + D.notes.map((n) => `<li class="note">${esc(n)}</li>`).join("") + "</ul>";
    $("overview").innerHTML = h;
  }

  // ---------- thumbnails ----------
  const sheetCss = document.head.appendChild(document.createElement("style")).sheet, sheetDone = new Set(), sheetImg = {};
  const sheetUri = (s) => "data:image/jpeg;base64," + $("sheet-" + s).textContent;
  function thumbHtml(id) {
    const t = id >= 0 ? D.images.thumb[id] : null;
    if (!t) return "";
    if (!sheetDone.has(t[0])) { sheetDone.add(t[0]); sheetCss.insertRule(`.s${t[0]}{background-image:url("${sheetUri(t[0])}")}`, 0); }
    return `<span class="th s${t[0]}" style="width:${t[3] * TS}px;height:${t[4] * TS}px;background-position:-${t[1] * TS}px -${t[2] * TS}px;background-size:${16 * CAP * TS}px auto"></span>`;
  }
  function sheetImage(s, cb) {
    if (!sheetImg[s]) { sheetImg[s] = new Image(); sheetImg[s].onload = cb; sheetImg[s].src = sheetUri(s); }
    return sheetImg[s];
  }

  // ---------- per-image table ----------
  const COLS = [{ id: "t", cls: "t", label: "" }, { id: "key", cls: "k", label: "key" }, { id: "method", cls: "m", label: "method" }]
    .concat(D.datasets.length > 1 ? [{ id: "dataset", cls: "d", label: "dataset" }] : [])
    .concat(M.map((m) => ({ id: m, cls: "v", label: m + (HIGH[m] === null ? "" : HIGH[m] ? " \u2191" : " \u2193") })))
    .concat(V.disagree.some((x) => !Number.isNaN(x)) ? [{ id: "disagree", cls: "v", label: "disagree" }] : []);
  const T = { view: new Int32Array(0), col: null, desc: false, keyRank: null };
  function keyRank() {
    if (!T.keyRank) {
      const idx = Array.from({ length: N }, (_, i) => i).sort((a, b) => (R.key[a] < R.key[b] ? -1 : R.key[a] > R.key[b] ? 1 : a - b));
      T.keyRank = new Float64Array(N); idx.forEach((r, i) => { T.keyRank[r] = i; });
    }
    return T.keyRank;
  }
  function sortKey(col) {
    if (col === "key") return keyRank();
    if (col === "method") return Float64Array.from(R.method);
    if (col === "dataset") return Float64Array.from(R.dataset);
    return V[col];
  }
  function sortView(view, col, desc) {  // NaN last in either direction; ties keep their order
    const k = sortKey(col), s = desc ? -1 : 1, pos = new Int32Array(N);
    view.forEach((r, i) => { pos[r] = i; });
    return view.sort((a, b) => { const x = k[a], y = k[b], nx = Number.isNaN(x), ny = Number.isNaN(y);
      if (nx || ny) return nx && ny ? pos[a] - pos[b] : nx ? 1 : -1;
      return x === y ? pos[a] - pos[b] : x < y ? -s : s; });
  }
  function applyFilters() {
    const me = $("f-method").value, ds = $("f-dataset").value, q = $("f-key").value.trim().toLowerCase(), mode = $("f-mode").value;
    const metric = $("f-metric").value;
    let out = [];
    for (let i = 0; i < N; i++) {
      if (me !== "" && R.method[i] !== +me) continue;
      if (ds !== "" && R.dataset[i] !== +ds) continue;
      if (q && !R.key[i].toLowerCase().includes(q)) continue;
      if (mode === "worst" && Number.isNaN(V[metric][i])) continue;
      if (mode === "disagree" && !(V.disagree[i] >= 0.5)) continue;
      out.push(i);
    }
    let view = Int32Array.from(out);
    if (mode === "worst") view = sortView(view, metric, HIGH[metric] === false).slice(0, Math.max(1, +$("f-n").value || 20));
    if (mode === "disagree") view = sortView(view, "disagree", true);
    if (T.col) view = sortView(view, T.col, T.desc);
    T.view = view;
    $("count").textContent = `showing ${view.length} of ${N} rows`;
    $("spacer").style.height = view.length * RH + "px";
    render(true);
  }
  function rowHtml(r, pos) {
    let h = `<div class="trow" data-row="${r}" data-pos="${pos}">`;
    for (const c of COLS) {
      if (c.id === "t") h += `<span class="t">${thumbHtml(R.sr[r] >= 0 ? R.sr[r] : R.gt[r])}</span>`;
      else if (c.id === "key") h += `<span class="k" data-col="key" title="${esc(R.key[r])}${R.error[r] ? " — " + esc(R.error[r]) : ""}">${esc(R.key[r])}</span>`;
      else if (c.id === "method") h += `<span class="m" data-col="method">${esc(D.methods[R.method[r]])}</span>`;
      else if (c.id === "dataset") h += `<span class="d" data-col="dataset">${esc(D.datasets[R.dataset[r]])}</span>`;
      else { const raw = c.id === "disagree" ? R.disagree[r] : R.values[c.id][r]; h += `<span data-col="${esc(c.id)}" data-v="${esc(dv(raw))}">${fmt(raw, c.id === "disagree" ? 2 : undefined)}</span>`; }
    }
    return h + "</div>";
  }
  let lastFirst = -1;
  function render(force) {
    const body = $("tbody"), n = T.view.length;
    const first = Math.max(0, Math.floor(body.scrollTop / RH) - 5), last = Math.min(n, first + Math.ceil(body.clientHeight / RH) + 12);
    if (!force && first === lastFirst) return;
    lastFirst = first;
    let h = "";
    for (let p = first; p < last; p++) h += rowHtml(T.view[p], p);
    const win = $("win"); win.style.top = first * RH + "px"; win.innerHTML = h;
  }
  function setupTable() {
    $("thead").innerHTML = COLS.map((c) => `<span class="${c.cls}" data-sort="${esc(c.id)}">${esc(c.label)}</span>`).join("");
    $("thead").addEventListener("click", (ev) => {
      const col = ev.target.dataset.sort; if (!col || col === "t") return;
      T.desc = T.col === col ? !T.desc : false; T.col = col;
      for (const s of $("thead").children) { s.classList.toggle("sorted", s.dataset.sort === col); s.classList.toggle("desc", s.dataset.sort === col && T.desc); }
      applyFilters();
    });
    $("f-method").innerHTML = "<option value=''>all</option>" + D.methods.map((m, i) => `<option value="${i}">${esc(m)}</option>`).join("");
    $("f-dataset").innerHTML = "<option value=''>all</option>" + D.datasets.map((d, i) => `<option value="${i}">${esc(d || "(none)")}</option>`).join("");
    $("f-dataset-label").hidden = D.datasets.length < 2;
    $("f-metric").innerHTML = M.filter((m) => HIGH[m] !== null).map((m) => `<option>${esc(m)}</option>`).join("");
    const modeUi = () => { const w = $("f-mode").value === "worst"; $("f-metric-label").hidden = !w; $("f-n-label").hidden = !w; };
    const unsort = () => { T.col = null; T.desc = false; for (const s of $("thead").children) s.classList.remove("sorted", "desc"); };
    for (const id of ["f-method", "f-dataset", "f-mode", "f-metric", "f-n"]) $(id).addEventListener("change", () => {
      if (id === "f-mode" || id === "f-metric") unsort();  // "worst 20" and "disagree" list worst first (a header re-sorts them)
      modeUi(); applyFilters(); });
    $("f-key").addEventListener("input", applyFilters);
    $("tbody").addEventListener("scroll", () => render(false));
    $("win").addEventListener("click", (ev) => { const row = ev.target.closest(".trow"); if (row) openViewer(+row.dataset.pos); });
    modeUi(); applyFilters();
  }

  // ---------- viewer ----------
  const S = { pos: 0, zoom: 1, cx: 0.5, cy: 0.5, flick: false, flip: false, timer: null, drag: null, panels: [] };
  let groups = null;
  function groupOf(r) {
    if (!groups) { groups = new Map(); for (let i = 0; i < N; i++) { const g = R.dataset[i] + "\u0001" + R.key[i]; if (!groups.has(g)) groups.set(g, []); groups.get(g).push(i); } }
    return groups.get(R.dataset[r] + "\u0001" + R.key[r]);
  }
  function source(id) {
    const src = { id, thumb: D.images.thumb[id], size: D.images.size[id], full: null, failed: false };
    const url = D.images.full[id];
    if (url) { const im = new Image(); im.onload = () => { src.full = im; draw(); }; im.onerror = () => { src.failed = true; noteFull(); }; im.src = url; }
    if (src.thumb) sheetImage(src.thumb[0], draw);
    return src;
  }
  function openViewer(pos) {
    S.pos = Math.max(0, Math.min(T.view.length - 1, pos));
    const r = T.view[S.pos], rows = groupOf(r);
    const P = [];
    if (R.gt[r] >= 0) P.push({ name: "GT", src: source(R.gt[r]), row: -1 });
    if (R.lr[r] >= 0) P.push({ name: "LR", src: source(R.lr[r]), row: -1 });
    for (const i of rows) P.push({ name: D.methods[R.method[i]], src: source(R.sr[i]), row: i, map: R.map[i] >= 0 ? source(R.map[i]) : null });
    S.panels = P;
    $("v-title").textContent = `${R.key[r]}${D.datasets.length > 1 ? " (" + D.datasets[R.dataset[r]] + ")" : ""}  [${S.pos + 1}/${T.view.length}]`;
    const best = {};
    for (const m of M) { if (HIGH[m] === null) continue; const vs = rows.map((i) => V[m][i]).filter((x) => !Number.isNaN(x)); if (vs.length > 1) best[m] = HIGH[m] ? Math.max(...vs) : Math.min(...vs); }
    $("panels").style.gridTemplateColumns = `repeat(${P.length <= 5 ? P.length : 4}, 1fr)`;
    $("panels").innerHTML = P.map((p, k) => `<div class="panel" data-panel="${esc(p.name)}"><h3>${esc(p.name)}</h3><canvas data-k="${k}"></canvas><div class="vals">` +
      (p.row < 0 ? esc(p.name === "GT" ? "reference" : "input") : M.map((m) => `<span data-metric="${esc(m)}" data-v="${esc(dv(R.values[m][p.row]))}"${V[m][p.row] === best[m] ? " class='best'" : ""}>${esc(m)} ${fmt(R.values[m][p.row])}</span>`).join(" &middot; ")) + "</div></div>").join("");
    const names = P.map((p) => `<option>${esc(p.name)}</option>`).join("");
    const a = $("v-a").value, b = $("v-b").value;
    $("v-a").innerHTML = names; $("v-b").innerHTML = names;
    $("v-a").value = P.some((p) => p.name === a) ? a : P[0].name;
    $("v-b").value = P.some((p) => p.name === b) ? b : P[Math.min(P.length - 1, R.lr[r] >= 0 ? 2 : 1)].name;
    $("v-map-label").hidden = $("v-opacity").hidden = !P.some((p) => p.map);
    for (const c of $("panels").querySelectorAll("canvas")) bindCanvas(c);
    $("viewer").hidden = false; evenVals(); noteFull(); draw();
  }
  // the values under the panels take one line or several: give every panel the same, so the canvases line up
  function evenVals() {
    const vs = [...$("panels").querySelectorAll(".vals")];
    for (const v of vs) v.style.minHeight = "";
    const h = Math.max(...vs.map((v) => v.offsetHeight));
    for (const v of vs) v.style.minHeight = h + "px";
  }
  function noteFull() {
    const thumbs = S.panels.filter((p) => !D.images.full[p.src.id] || p.src.failed).map((p) => p.name);
    $("v-note").textContent = thumbs.length ? `thumbnail (${CAP} px) shown for ${thumbs.join(", ")}: full resolution needs the data beside the report (8-bit PNG/JPEG) or --embed-full` : "";
  }
  function paint(c, src, alpha) {
    const ctx = c.getContext("2d"), [W, H] = src.size || [1, 1], w = c.width, h = c.height;
    const fit = Math.min(w / W, h / H), sc = fit * S.zoom, x0 = w / 2 - S.cx * W * sc, y0 = h / 2 - S.cy * H * sc;
    ctx.globalAlpha = alpha; ctx.imageSmoothingEnabled = S.zoom * fit < 2;
    if (src.full) ctx.drawImage(src.full, x0, y0, W * sc, H * sc);
    else if (src.thumb && sheetImg[src.thumb[0]] && sheetImg[src.thumb[0]].complete) {
      const t = src.thumb; ctx.drawImage(sheetImg[t[0]], t[1], t[2], t[3], t[4], x0, y0, W * sc, H * sc);
    }
    ctx.globalAlpha = 1;
    return { zoom: sc / fit, cx: (w / 2 - x0) / (W * sc), cy: (h / 2 - y0) / (H * sc) };
  }
  function draw() {
    if ($("viewer").hidden) return;
    const a = $("v-a").value, b = $("v-b").value, pb = S.panels.find((p) => p.name === b);
    $("panels").querySelectorAll("canvas").forEach((c, k) => {
      const dpr = window.devicePixelRatio || 1, w = Math.max(1, Math.round(c.clientWidth * dpr)), h = Math.max(1, Math.round(c.clientHeight * dpr));
      if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
      const ctx = c.getContext("2d"); ctx.fillStyle = "#000"; ctx.fillRect(0, 0, w, h);
      const p = S.flick && S.flip && S.panels[k].name === a && pb ? pb : S.panels[k];
      const g = paint(c, p.src, 1);
      if ($("v-map").checked && p.map) paint(c, p.map, +$("v-opacity").value);
      Object.assign(c.dataset, { zoom: g.zoom.toFixed(6), cx: g.cx.toFixed(6), cy: g.cy.toFixed(6), showing: p.name });
      c.previousElementSibling.textContent = p === S.panels[k] ? p.name : `${p.name} (flicker)`;
    });
    $("v-zoom").textContent = S.zoom === 1 ? "fit" : `zoom ${S.zoom.toFixed(2)}x`;
    $("viewer").dataset.flicker = S.flick ? "on" : "off";
  }
  function setZoom(z, fx, fy) {  // keep the image point at fraction (fx, fy) of the view where it is
    z = Math.min(64, Math.max(1, z));
    if (fx !== undefined) { const k = 1 / S.zoom - 1 / z; S.cx += (fx - 0.5) * k; S.cy += (fy - 0.5) * k; }
    S.zoom = z; if (z === 1) { S.cx = 0.5; S.cy = 0.5; }
    draw();
  }
  function setFlicker(on) {
    S.flick = on; S.flip = false; clearInterval(S.timer);
    if (on) S.timer = setInterval(() => { S.flip = !S.flip; draw(); }, 500);
    draw();
  }
  function bindCanvas(c) {
    c.addEventListener("wheel", (ev) => { ev.preventDefault(); const r = c.getBoundingClientRect();
      setZoom(S.zoom * (ev.deltaY < 0 ? 1.25 : 0.8), (ev.clientX - r.left) / r.width, (ev.clientY - r.top) / r.height); }, { passive: false });
    c.addEventListener("mousedown", (ev) => { ev.preventDefault(); S.drag = { x: ev.clientX, y: ev.clientY, c }; });
  }
  window.addEventListener("mousemove", (ev) => {
    if (!S.drag) return;
    const c = S.drag.c, p = S.panels[+c.dataset.k], [W, H] = p.src.size || [1, 1];
    const fit = Math.min(c.clientWidth / W, c.clientHeight / H) * S.zoom;  // CSS px per image px in this panel
    S.cx -= (ev.clientX - S.drag.x) / (W * fit); S.cy -= (ev.clientY - S.drag.y) / (H * fit);
    S.drag.x = ev.clientX; S.drag.y = ev.clientY; draw();
  });
  window.addEventListener("mouseup", () => { S.drag = null; });
  window.addEventListener("resize", () => { if (!$("viewer").hidden) evenVals(); draw(); render(true); });
  document.addEventListener("keydown", (ev) => {
    if ($("viewer").hidden || ev.target.tagName === "INPUT" && ev.target.type !== "checkbox" && ev.target.type !== "range") return;
    const k = ev.key;
    if (k === "Escape") { setFlicker(false); $("viewer").hidden = true; }
    else if (k === "ArrowRight" || k === "ArrowDown") { ev.preventDefault(); openViewer(S.pos + 1); }
    else if (k === "ArrowLeft" || k === "ArrowUp") { ev.preventDefault(); openViewer(S.pos - 1); }
    else if (k === "+" || k === "=") setZoom(S.zoom * 1.5, 0.5, 0.5);
    else if (k === "-") setZoom(S.zoom / 1.5, 0.5, 0.5);
    else if (k === "0") setZoom(1);
    else if (k === "f" || k === "F") setFlicker(!S.flick);
    else if (k === "m" || k === "M") { $("v-map").checked = !$("v-map").checked; draw(); }
  });
  $("v-prev").onclick = () => openViewer(S.pos - 1); $("v-next").onclick = () => openViewer(S.pos + 1);
  $("v-close").onclick = () => { setFlicker(false); $("viewer").hidden = true; };
  $("v-flicker").onclick = () => setFlicker(!S.flick);
  for (const id of ["v-a", "v-b", "v-map", "v-opacity"]) $(id).addEventListener("input", draw);
  const TABS = ["overview", "images", "study", "scene"].filter((t) => t === "overview" || (t === "images" ? N > 0 :
    t === "study" ? (D.studies || []).length > 0 : (D.scenes || []).length > 0));
  for (const t of ["images", "study", "scene"]) $("tab-" + t).hidden = !TABS.includes(t);
  for (const t of TABS) $("tab-" + t).onclick = () => {
    for (const u of TABS) { $(u).hidden = u !== t; $("tab-" + u).classList.toggle("on", u === t); }
    if (t === "images") render(true);
  };
  $("study").innerHTML = (D.studies || []).map(studyHtml).join("");
  $("scene").innerHTML = (D.scenes || []).map(sceneHtml).join("");

  overview(); setupTable();
  window.__report = { applyFilters, render, openViewer, setZoom, state: S, table: T };
  document.body.dataset.ready = "1";
})();
