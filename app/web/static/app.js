// facestream web app: a little plain JavaScript over the REST API (no build step).
// Every name is put in the page with textContent, never as HTML.
"use strict";

async function api(method, url, body) {
  const opts = {method, headers: {}, credentials: "same-origin"};
  if (body instanceof FormData) {
    opts.body = body;
  } else if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(url, opts);
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = {detail: text}; }
  if (!resp.ok) throw new Error((data && data.detail) || resp.statusText);
  return data;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c);
  return node;
}

function toast(message, error) {
  const t = document.getElementById("toast");
  t.textContent = message;
  t.className = error ? "show error" : "show";
  clearTimeout(t._timer);
  t._timer = setTimeout(() => { t.className = ""; }, 4000);
}

function ago(ts) {
  const s = Math.max(0, Date.now() / 1000 - ts);
  return s < 60 ? `${s.toFixed(0)} s ago` : `${(s / 60).toFixed(0)} min ago`;
}

const NEAR = 0.2;  // an unknown face's nearest person is worth showing in the strip from this similarity on
let people = [];
async function loadPeople() {
  try { people = await api("GET", "/api/people"); } catch (e) { people = []; }
  const list = document.getElementById("people-names");
  if (list) list.replaceChildren(...people.map((p) => el("option", {value: p.name})));
  return people;
}

function personByName(name) {
  const key = name.trim().toLowerCase();
  return people.find((p) => p.name.toLowerCase() === key);
}

// ---- the "this is …" / "not …" dialog, shared by the live page and the review queue
let current = null;
function openNameDialog(track) {
  current = track;
  const dlg = document.getElementById("name-dialog");
  document.getElementById("dlg-crop").src = track.crop_url || "";
  const who = track.name === "unknown"
    ? (track.nearest ? `unknown; nearest ${track.nearest} at similarity ${track.similarity.toFixed(2)}` : "unknown")
    : `${track.name} (similarity ${track.similarity.toFixed(2)})`;
  document.getElementById("dlg-info").textContent = `stream ${track.stream}, track #${track.track_id}: ${who}`;
  document.getElementById("dlg-name").value = "";
  const seen = document.getElementById("dlg-seen-list");
  if (seen) seen.replaceChildren();
  document.getElementById("dlg-error").textContent = "";
  const not = document.getElementById("dlg-not");
  not.hidden = !track.person_id;
  not.textContent = `Not ${track.name}`;
  loadPeople();
  dlg.showModal();
  document.getElementById("dlg-name").focus();
}

async function enrolCurrent(event) {
  event.preventDefault();
  const name = document.getElementById("dlg-name").value.trim();
  if (!name || !current) return;
  const known = personByName(name);
  const body = known ? {person_id: known.id} : {name};
  try {
    const person = await api("POST", `/api/tracks/${current.stream}/${current.track_id}/enrol`, body);
    document.getElementById("name-dialog").close();
    toast(`Enrolled track #${current.track_id} as ${person.name}`);
    refreshTracks();
  } catch (e) {
    document.getElementById("dlg-error").textContent = e.message;
  }
}

async function notCurrent() {
  if (!current) return;
  try {
    await api("POST", `/api/tracks/${current.stream}/${current.track_id}/not`, {person_id: current.person_id});
    document.getElementById("name-dialog").close();
    toast(`Track #${current.track_id} is not ${current.name}: noted`);
    refreshTracks();
  } catch (e) {
    document.getElementById("dlg-error").textContent = e.message;
  }
}

function setupDialog() {
  const form = document.getElementById("name-form");
  if (!form) return;
  form.addEventListener("submit", enrolCurrent);
  document.getElementById("dlg-not").addEventListener("click", notCurrent);
  document.getElementById("dlg-cancel").addEventListener("click", () => document.getElementById("name-dialog").close());
  const seen = document.getElementById("dlg-seen");
  if (seen) seen.addEventListener("click", seenBefore);
}

// ---- stored sightings (SIGHTINGS=known|all): "seen before" and the stored review queue
function when(ts) {
  return new Date(ts * 1000).toLocaleString();
}

function sightingCard(s, ...extra) {
  const who = s.known ? s.name : (s.nearest ? `unknown (nearest ${s.nearest} ${s.similarity.toFixed(2)})` : "unknown");
  const score = s.score === null ? "" : ` · match ${s.score.toFixed(2)}`;
  return el("div", {class: "face review sighting", "data-sighting": s.id},
            s.snapshot ? el("img", {src: s.snapshot, alt: `sighting ${s.id}`}) : el("div", {class: "nocrop", text: "…"}),
            el("span", {class: "face-name", text: who}),
            el("span", {class: "muted small", text: `stream ${s.stream} · ${when(s.first_seen)}${score}`}), ...extra);
}

async function seenBefore() {
  if (!current) return;
  const list = document.getElementById("dlg-seen-list");
  list.replaceChildren(el("p", {class: "muted", text: "searching…"}));
  try {
    const r = await api("POST", "/api/sightings/search", {stream: current.stream, track: current.track_id});
    list.replaceChildren(...(r.sightings.length ? r.sightings.map((s) => sightingCard(s))
      : [el("p", {class: "muted", text: "not seen before (or SIGHTINGS keeps no such faces)"})]));
  } catch (e) { list.replaceChildren(el("p", {class: "error", text: e.message})); }
}

async function nameSighting(s, value) {
  const blob = await (await fetch(s.snapshot, {credentials: "same-origin"})).blob();
  const form = new FormData();
  form.append("photos", blob, `sighting-${s.id}.jpg`);
  const known = personByName(value);
  if (known) return api("POST", `/api/people/${known.id}/photos`, form);
  form.append("name", value);
  return api("POST", "/api/people", form);
}

function storedReviewCard(s) {
  const input = el("input", {placeholder: "name", autocomplete: "off"});
  input.setAttribute("list", "people-names");
  const name = el("button", {type: "button", text: "Name"});
  name.disabled = !s.snapshot;
  name.addEventListener("click", async () => {
    const value = input.value.trim();
    if (!value) return;
    try {
      await nameSighting(s, value);
      toast(`Enrolled as ${value}`);
      setTimeout(() => location.reload(), 800);
    } catch (e) { toast(e.message, true); }
  });
  return sightingCard(s, input, el("div", {class: "row"}, name));
}

async function loadStoredReview() {
  const box = document.getElementById("sightings-review");
  if (!box) return;
  try {
    const r = await api("GET", "/api/sightings?unknown=true&since=86400&limit=50");
    box.replaceChildren(...(r.sightings.length ? r.sightings.map(storedReviewCard)
      : [el("p", {class: "muted", text: "none"})]));
  } catch (e) { box.replaceChildren(el("p", {class: "muted", text: `stored sightings unavailable: ${e.message}`})); }
}

// ---- live page
function faceCard(t) {
  const label = t.name === "unknown"
    ? (t.nearest && t.similarity >= NEAR ? `unknown (nearest ${t.nearest} ${t.similarity.toFixed(2)})` : "unknown")
    : `${t.name} ${t.similarity.toFixed(2)}`;
  const card = el("button", {class: `face ${t.name === "unknown" ? "unknown" : "known"}${t.live ? " live" : ""}`,
                             type: "button", "data-track": `${t.stream}/${t.track_id}`,
                             title: "click to name this face"},
    t.crop_url ? el("img", {src: t.crop_url, alt: `track ${t.track_id}`}) : el("div", {class: "nocrop", text: "…"}),
    el("span", {class: "face-name", text: label}),
    el("span", {class: "muted small", text: `#${t.track_id} · ${ago(t.last_seen)}`}));
  card.addEventListener("click", () => openNameDialog(t));
  return card;
}

async function refreshTracks() {
  const strip = document.getElementById("recent");
  const review = document.getElementById("review");
  if (!strip && !review) return;
  const page = document.getElementById("live-page");
  const stream = page && page.dataset.stream !== "" ? `?stream=${page.dataset.stream}` : "";
  let data;
  try { data = await api("GET", `/api/tracks${stream}`); } catch (e) { return; }
  const tracks = data.streams.flatMap((s) => s.tracks);
  if (strip) {
    const cards = tracks.filter((t) => t.crop_url).slice(0, 40).map(faceCard);
    strip.replaceChildren(...(cards.length ? cards : [el("p", {class: "muted", text: "no face yet"})]));
  }
  if (review) {
    const unknown = tracks.filter((t) => t.name === "unknown" && !t.dismissed && t.crop_url).slice(0, 40);
    review.replaceChildren(...(unknown.length ? unknown.map(reviewCard) : [el("p", {class: "muted", text: "none"})]));
  }
}

function fmtGallery(g) {
  if (!g) return "gallery: …";
  if (g.error) return `gallery: ${g.error}`;
  const parts = [];
  for (const k of ["people", "embeddings", "running", "status", "backend"]) {
    if (g[k] !== undefined && g[k] !== null && typeof g[k] !== "object") parts.push(`${k} ${g[k]}`);
  }
  return `gallery: ${parts.join(", ") || "ok"}`;
}

async function refreshStats() {
  const table = document.getElementById("stats-table");
  if (!table) return;
  let s;
  try { s = await api("GET", "/api/stats"); } catch (e) { return; }
  const src = document.getElementById("stats-source");
  src.textContent = `source: ${s.source || "…"}`;
  src.className = s.warn ? "error" : "muted";
  document.getElementById("stats-gallery").textContent = fmtGallery(s.gallery);
  document.getElementById("stats-latency").textContent = s.latency_p50_ms !== undefined
    ? `capture→display latency p50 ${s.latency_p50_ms.toFixed(0)} ms, p99 ${s.latency_p99_ms.toFixed(0)} ms` : "latency: …";
  table.tBodies[0].replaceChildren(...s.stages.map((r) => el("tr", {},
    el("td", {text: r.name}), el("td", {text: r.fps.toFixed(1)}), el("td", {text: `${(r.busy * 100).toFixed(0)}%`}),
    el("td", {text: r.queue}), el("td", {text: r.drops}), el("td", {text: r.latency_p50_ms.toFixed(0)}))));
}

// ---- people page
function reviewCard(t) {
  const input = el("input", {placeholder: "name", autocomplete: "off"});
  input.setAttribute("list", "people-names");
  const name = el("button", {type: "button", text: "Name"});
  const dismiss = el("button", {type: "button", text: "Dismiss", class: "secondary"});
  name.addEventListener("click", async () => {
    const value = input.value.trim();
    if (!value) return;
    const known = personByName(value);
    try {
      await api("POST", `/api/tracks/${t.stream}/${t.track_id}/enrol`, known ? {person_id: known.id} : {name: value});
      toast(`Enrolled as ${value}`);
      setTimeout(() => location.reload(), 800);
    } catch (e) { toast(e.message, true); }
  });
  dismiss.addEventListener("click", async () => {
    try { await api("POST", `/api/tracks/${t.stream}/${t.track_id}/dismiss`); refreshTracks(); }
    catch (e) { toast(e.message, true); }
  });
  const nearest = t.nearest ? `nearest ${t.nearest} ${t.similarity.toFixed(2)}` : "no one near";
  return el("div", {class: "face review"}, el("img", {src: t.crop_url, alt: `track ${t.track_id}`}),
            el("span", {class: "muted small", text: `#${t.track_id} · ${nearest} · ${ago(t.last_seen)}`}),
            input, el("div", {class: "row"}, name, dismiss));
}

function setupPeople() {
  const page = document.getElementById("people-page");
  if (!page) return;
  const datalist = el("datalist", {id: "people-names"});
  page.append(datalist);
  loadPeople();
  document.getElementById("new-person").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("POST", "/api/people", new FormData(ev.target));
      toast(`Added ${r.person ? r.person.name : "person"}`);
      setTimeout(() => location.reload(), 600);
    } catch (e) { toast(e.message, true); }
  });
  for (const card of document.querySelectorAll("article.person")) {
    const id = card.dataset.id;
    const name = card.dataset.name;
    const act = async (fn, done) => {
      try { await fn(); toast(done); setTimeout(() => location.reload(), 600); } catch (e) { toast(e.message, true); }
    };
    card.querySelector(".rename").addEventListener("click", () => {
      const value = prompt(`Rename ${name} to:`, name);
      if (value && value.trim() && value.trim() !== name) {
        act(() => api("PATCH", `/api/people/${id}`, {name: value.trim()}), `Renamed to ${value.trim()}`);
      }
    });
    card.querySelector(".merge-into").addEventListener("change", (ev) => {
      const into = ev.target.value;
      const label = ev.target.selectedOptions[0].textContent;
      if (into && confirm(`Merge ${name} into ${label}? ${name}'s photos move to ${label}.`)) {
        act(() => api("PATCH", `/api/people/${id}`, {merge_into: into}), `Merged into ${label}`);
      } else { ev.target.value = ""; }
    });
    card.querySelector(".delete").addEventListener("click", () => {
      if (confirm(`Delete ${name} and all their photos? This cannot be undone.`)) {
        act(() => api("DELETE", `/api/people/${id}`), `Deleted ${name}`);
      }
    });
    card.querySelector(".add-photos").addEventListener("change", (ev) => {
      const form = new FormData();
      for (const f of ev.target.files) form.append("photos", f);
      act(() => api("POST", `/api/people/${id}/photos`, form), `Added photos to ${name}`);
    });
    for (const btn of card.querySelectorAll(".remove-photo")) {
      btn.addEventListener("click", () => {
        if (confirm(`Remove this photo of ${name}?`)) {
          act(() => api("DELETE", `/api/people/${id}/photos/${btn.dataset.photo}`), "Photo removed");
        }
      });
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setupDialog();
  setupPeople();
  loadStoredReview();
  if (document.getElementById("recent") || document.getElementById("review")) {
    refreshTracks();
    setInterval(refreshTracks, 1500);
  }
  if (document.getElementById("stats-table")) {
    refreshStats();
    setInterval(refreshStats, 1000);
  }
});
