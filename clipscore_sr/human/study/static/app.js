// The study page: no framework, no build step. Three canvases share one view (zoom, centre), drawn with
// nearest-neighbour pixels; answers go to the server, which maps left/right back to a/b.
// A balanced study sends its whole trial order up front; an active one (cfg.design === "active") gives one trial
// at a time: POST api/next, and the reply to each answer carries the next trial the server chose.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const S = { cfg: null, annotator: "", trials: [], answered: new Set(), idx: -1, cur: null, nAnswered: 0,
              nTrials: 0, shownAt: 0, screen: "intro",
              zoom: 1, cx: 0.5, cy: 0.5, flicker: false, swapped: false, timer: null, busy: false, drag: null };
  const active = () => S.cfg && S.cfg.design === "active";
  const sides = ["left", "gt", "right"];
  const img = { left: $("img-left"), gt: $("img-gt"), right: $("img-right") };
  const cv = { left: $("c-left"), gt: $("c-gt"), right: $("c-right") };

  async function api(method, url, body) {
    const opt = { method, credentials: "same-origin", headers: {} };
    if (body !== undefined) { opt.headers["Content-Type"] = "application/json"; opt.body = JSON.stringify(body); }
    const token = document.querySelector('meta[name="study-token"]');
    if (token && method !== "GET") opt.headers["X-Study-Token"] = token.content;
    let r;
    try { r = await fetch(url, opt); } catch (e) {  // no answer at all: the server is down or unreachable
      const err = new Error("the study server does not answer"); err.network = true; throw err;
    }
    let data = {};
    try { data = await r.json(); } catch (e) { data = { error: r.statusText }; }
    if (!r.ok) throw new Error(data.error || r.statusText);
    return data;
  }

  function show(screen) {
    S.screen = screen;
    for (const id of ["intro", "trial", "done"]) $(id).hidden = id !== screen;
    document.body.dataset.screen = screen;
  }

  function message(text) { $(S.screen === "intro" ? "intro-msg" : "msg").textContent = text || ""; }

  function nextUnanswered(from) {
    for (let k = 0; k < S.trials.length; k++) {
      const i = (from + k) % S.trials.length;
      if (!S.answered.has(S.trials[i].id)) return i;
    }
    return -1;
  }

  function load(el, src) {
    return new Promise((resolve, reject) => {
      el.onload = () => resolve(); el.onerror = () => reject(new Error("image did not load: " + src)); el.src = src;
    });
  }

  async function showTrial(i, note = "") {  // balanced: the index into S.trials; active: the trial itself ({id, shown_left})
    const t = active() ? i : S.trials[i];
    if (!active()) { S.idx = i; S.nAnswered = S.answered.size; S.nTrials = S.trials.length; }
    S.cur = t;
    const q = "?annotator=" + encodeURIComponent(S.annotator);
    S.busy = true;
    setFlicker(false);  // flicker belongs to one trial
    document.body.dataset.trial = "";
    for (let attempt = 1; ; attempt++) {  // the server may be down between answers: wait for it, say so
      try { await Promise.all(sides.map((s) => load(img[s], `img/${t.id}/${s}${q}`))); break; } catch (e) {
        const wait = Math.min(10, attempt);
        message(`cannot load the next images (is the study server running?); retrying in ${wait} s ...`);
        await new Promise((res) => setTimeout(res, wait * 1000));
      }
    }
    message(note);  // what happened before this trial (an undo), else nothing
    draw();
    $("progress").textContent = `${S.nAnswered + 1} / ${S.nTrials}`;
    document.body.dataset.trial = t.id;
    S.shownAt = performance.now();
    S.busy = false;
  }

  function draw() {
    const src = S.swapped ? { left: img.right, gt: img.gt, right: img.left } : img;
    for (const s of sides) {
      const c = cv[s], im = src[s];
      const dpr = window.devicePixelRatio || 1;
      const w = Math.max(1, Math.round(c.clientWidth * dpr)), h = Math.max(1, Math.round(c.clientHeight * dpr));
      if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
      const ctx = c.getContext("2d");
      ctx.imageSmoothingEnabled = false;
      ctx.fillStyle = "#000"; ctx.fillRect(0, 0, w, h);
      if (!im.naturalWidth) continue;
      const fit = Math.min(w / im.naturalWidth, h / im.naturalHeight);
      const sc = fit * S.zoom;
      const x0 = w / 2 - S.cx * im.naturalWidth * sc, y0 = h / 2 - S.cy * im.naturalHeight * sc;
      ctx.drawImage(im, x0, y0, im.naturalWidth * sc, im.naturalHeight * sc);
      c.classList.toggle("swapped", S.swapped && s !== "gt");
    }
    $("zoom-label").textContent = S.zoom === 1 ? "fit" : `zoom ${S.zoom.toFixed(2)}x`;
    $("cap-left").innerHTML = S.swapped ? "showing the <b>right</b> one (<kbd>&larr;</kbd> picks it)" : "left <kbd>&larr;</kbd>";
    $("cap-right").innerHTML = S.swapped ? "showing the <b>left</b> one (<kbd>&rarr;</kbd> picks it)" : "right <kbd>&rarr;</kbd>";
  }

  function setZoom(z, fx, fy) {  // keep the image point at fraction (fx, fy) of the view fixed
    z = Math.min(64, Math.max(1, z));
    if (fx !== undefined) {
      const k = 1 / S.zoom - 1 / z;
      S.cx += (fx - 0.5) * k; S.cy += (fy - 0.5) * k;
    }
    S.zoom = z;
    if (z === 1) { S.cx = 0.5; S.cy = 0.5; }
    draw();
  }

  function setFlicker(on) {
    S.flicker = on;
    clearInterval(S.timer);
    S.swapped = false;
    if (on) S.timer = setInterval(() => { S.swapped = !S.swapped; draw(); }, 500);
    $("flicker-label").textContent = on ? "flicker on (F)" : "";
    draw();
  }

  async function start() {
    const name = S.cfg.annotator || $("name").value.trim();
    if (!name) { message("Please enter your name or id first."); $("name").focus(); return; }
    try {
      const sess = await api("GET", "api/session?annotator=" + encodeURIComponent(name));
      S.annotator = sess.annotator; S.trials = sess.trials; S.answered = new Set(sess.answered);
      S.nAnswered = sess.answered.length; S.nTrials = sess.n_trials;
      if (active()) {
        const res = await api("POST", "api/next", { annotator: S.annotator });
        S.nAnswered = res.n_answered;
        if (!res.next) { finish(); return; }
        show("trial");
        await showTrial(res.next);
        return;
      }
    } catch (e) { message(e.message); return; }
    const i = nextUnanswered(0);
    if (i < 0) { finish(); return; }
    show("trial");
    await showTrial(i);
  }

  function finish() {
    setFlicker(false);
    show("done");
    if (!active()) { S.nAnswered = S.answered.size; S.nTrials = S.trials.length; }
    $("done-msg").textContent = `${S.nAnswered} of ${S.nTrials} trials answered as ${S.annotator}.`;
  }

  // `key` is the slot the key names ("left", "right") or "tie". The recorded choice is the candidate displayed in
  // that slot at the moment of the key press: while flicker has the candidates swapped, "left" is the one the
  // server placed on the right. The response time is taken at the key press too, so a retry does not add to it.
  async function answer(key) {
    if (S.busy || !S.cur) return;
    const t = S.cur;
    const swapped = S.swapped && key !== "tie";
    const choice = swapped ? (key === "left" ? "right" : "left") : key;
    const rt = Math.round(performance.now() - S.shownAt);
    S.busy = true;
    let res;
    for (let attempt = 1; ; attempt++) {
      try {
        res = await api("POST", "api/answer", { annotator: S.annotator, trial: t.id, shown_left: t.shown_left, choice,
                                                rt_ms: rt });
        break;
      } catch (e) {
        if (!e.network) { message(e.message); S.busy = false; return; }
        const wait = Math.min(10, attempt);
        message(`your answer was NOT saved: ${e.message}; retrying in ${wait} s (attempt ${attempt}) ...`);
        document.body.dataset.unsaved = "1";
        await new Promise((res) => setTimeout(res, wait * 1000));
      }
    }
    delete document.body.dataset.unsaved;
    S.answered.add(t.id);
    let i;
    if (active()) {
      S.nAnswered = res.n_answered; i = res.next;
      if (!i) { S.busy = false; S.cur = null; finish(); return; }
    } else {
      i = nextUnanswered(S.idx + 1);
      if (i < 0) { S.busy = false; finish(); return; }
    }
    await showTrial(i);
    if (swapped) message(`saved: the one that was shown on the ${key} when you pressed the key`);
  }

  async function undo() {
    if (S.busy) return;
    S.busy = true;
    let res;
    try { res = await api("POST", "api/undo", { annotator: S.annotator }); } catch (e) { message(e.message); S.busy = false; return; }
    if (!res.undone) { S.busy = false; message("nothing to undo"); return; }
    S.answered.delete(res.undone);
    let i;
    if (active()) {  // the server gives the annotator's earliest unanswered trial back: the one just undone
      try { res = await api("POST", "api/next", { annotator: S.annotator }); } catch (e) { message(e.message); S.busy = false; return; }
      S.busy = false;
      S.nAnswered = res.n_answered; i = res.next;
      if (!i) { message("nothing to undo"); return; }
    } else {
      S.busy = false;
      i = S.trials.findIndex((t) => t.id === res.undone);
    }
    show("trial");
    await showTrial(i, `undid your answer to trial ${(active() ? S.nAnswered : S.answered.size) + 1}; answer it again`);
  }

  document.addEventListener("keydown", (ev) => {
    if (S.screen === "intro") {
      if (ev.key === "Enter") { ev.preventDefault(); start(); }
      return;
    }
    if (ev.key === "Backspace") { ev.preventDefault(); undo(); return; }
    if (S.screen !== "trial") return;
    const k = ev.key;
    if (k === "ArrowLeft") { ev.preventDefault(); answer("left"); }
    else if (k === "ArrowRight") { ev.preventDefault(); answer("right"); }
    else if (k === "ArrowDown") {
      ev.preventDefault();
      if (S.cfg.allow_tie) answer("tie"); else message("this study has no 'can't tell' answer");
    }
    else if (k === "+" || k === "=") setZoom(S.zoom * 1.5, 0.5, 0.5);
    else if (k === "-") setZoom(S.zoom / 1.5, 0.5, 0.5);
    else if (k === "0") setZoom(1);
    else if (k === "f" || k === "F") setFlicker(!S.flicker);
  });

  for (const s of sides) {
    const c = cv[s];
    c.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const r = c.getBoundingClientRect();
      setZoom(S.zoom * (ev.deltaY < 0 ? 1.25 : 0.8), (ev.clientX - r.left) / r.width, (ev.clientY - r.top) / r.height);
    }, { passive: false });
    c.addEventListener("mousedown", (ev) => { S.drag = { x: ev.clientX, y: ev.clientY, w: c.clientWidth }; });
  }
  window.addEventListener("mousemove", (ev) => {
    if (!S.drag) return;
    const k = 1 / (S.drag.w * S.zoom);
    S.cx -= (ev.clientX - S.drag.x) * k; S.cy -= (ev.clientY - S.drag.y) * k;
    S.drag.x = ev.clientX; S.drag.y = ev.clientY;
    draw();
  });
  window.addEventListener("mouseup", () => { S.drag = null; });
  window.addEventListener("resize", draw);

  api("GET", "api/config").then((cfg) => {
    S.cfg = cfg;
    if (cfg.annotator) $("name-row").hidden = true; else $("name").focus();
    if (!cfg.allow_tie) { $("tie-key").hidden = true; $("tie-hint").hidden = true; }
    document.body.dataset.ready = "1";
  }).catch((e) => message(e.message));
})();
