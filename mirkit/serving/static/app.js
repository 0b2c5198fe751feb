// The mirkit serve page: a listener's recent plays, what the model recommends next (or
// the new releases it ranks highest for them), and any track's detail and neighbours.
// Plain DOM code over the JSON API (/api/v1); nothing is fetched from elsewhere.
"use strict";

const API = "/api/v1";
const KINDS = ["id", "audio", "lyrics", "cover", "tabular", "none"];
const state = { run: null, user: null, view: "next" };
const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "on") Object.entries(value).forEach(([e, f]) => node.addEventListener(e, f));
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null) node.append(child);
  return node;
}

async function api(path, options) {
  const response = await fetch(API + path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function trackUrl(id, what) { return `${API}/tracks/${id}/${what}`; }

function attentionBar(attention) {
  if (!attention) return null;
  const bar = el("div", { class: "bar" });
  const parts = Object.entries(attention).filter(([, share]) => share > 0.005);
  bar.title = parts.map(([kind, share]) => `${kind} ${(100 * share).toFixed(0)}%`).join(", ");
  for (const [kind, share] of parts) {
    bar.append(el("span", { style: `width:${100 * share}%;background:var(--${kind})` }));
  }
  return bar;
}

function badges(row, listener) {
  const out = el("span");
  if (listener) {
    out.append(row.played ? el("span", { class: "badge played" }, "played before")
                          : el("span", { class: "badge new" }, "never played"));
  }
  if (row.cold) out.append(el("span", { class: "badge cold", title: "no training plays" }, "cold"));
  return out;
}

// One track row: rank, cover, artist and title, score; a player (or the mel image)
// for recent plays; badges and the attention bar for recommendations.
function trackRow(row, { rank = null, player = false, listener = false } = {}) {
  const cover = el("img", { class: "cover", alt: "", loading: "lazy", src: trackUrl(row.item_id, "cover.jpg") });
  cover.addEventListener("error", () => { cover.style.visibility = "hidden"; });
  const name = el("div", { class: "name" },
    el("div", {}, row.title || "(untitled)"),
    el("div", { class: "artist" }, row.artist, row.played_at ? ` · ${row.played_at.replace("T", " ").replace("Z", "")}` : ""),
    "score" in row ? badges(row, listener) : null,
    attentionBar(row.attention));
  const item = el("li", { class: "track", on: { click: () => showTrack(row.item_id) } },
    el("span", { class: "rank" }, rank === null ? "" : String(rank)),
    cover, name,
    el("span", { class: "score" }, "score" in row ? row.score.toFixed(3) : ""));
  item.dataset.itemId = row.item_id;
  if (player) item.append(mediaOf(row.item_id, true));
  return item;
}

// The track's audio when the server has --audio-dir, else its mel spectrogram.
function mediaOf(itemId, compact) {
  if (state.run.audio) {
    const audio = el("audio", { controls: true, preload: compact ? "none" : "metadata", src: trackUrl(itemId, "audio") });
    audio.addEventListener("click", (e) => e.stopPropagation());
    return audio;
  }
  const mel = el("img", { class: "mel", alt: "mel spectrogram", loading: "lazy", src: trackUrl(itemId, "mel.png") });
  mel.addEventListener("error", () => mel.remove());
  return mel;
}

function query() {
  const params = new URLSearchParams({ k: $("k").value || "10", explain: "true" });
  if ($("exclude-seen").checked) params.set("exclude_seen", "true");
  if ($("at").value.trim()) params.set("at", $("at").value.trim());
  return params;
}

async function showListener(user) {
  state.user = user;
  history.replaceState(null, "", `?user=${encodeURIComponent(user)}`);
  $("user-name").textContent = user;
  $("status").textContent = "loading…";
  $("status").classList.remove("error");
  const path = state.view === "next" ? "recommendations" : "new-releases";
  try {
    const answer = await api(`/users/${encodeURIComponent(user)}/${path}?${query()}`);
    $("request-time").textContent = `request at ${answer.request_time} (${answer.request_time_reason})`;
    $("recent").replaceChildren(...answer.recent.map((row) => trackRow(row, { player: true })));
    $("recommendations").replaceChildren(...answer.recommendations.map((row) => trackRow(row, { rank: row.rank, listener: true })));
    $("status").textContent = state.view === "next"
      ? `top ${answer.recommendations.length} for ${user}`
      : `the ${answer.recommendations.length} cold tracks (no training plays) ranked highest for ${user}`;
  } catch (err) {
    $("status").textContent = err.message;
    $("status").classList.add("error");
    $("recommendations").replaceChildren();
  }
}

async function showTrack(itemId) {
  const [track, similar] = await Promise.all([
    api(`/tracks/${itemId}`), api(`/tracks/${itemId}/similar?k=10`).catch(() => ({ similar: [] })),
  ]);
  $("detail").hidden = false;
  $("detail-title").textContent = `${track.artist} – ${track.title}`;
  const media = [];
  if (track.cover_url) media.push(el("img", { class: "cover", alt: "cover", src: track.cover_url }));
  if (track.mel_url) media.push(el("img", { class: "mel", alt: "mel spectrogram", src: track.mel_url }));
  if (track.audio_url) media.push(el("audio", { controls: true, preload: "metadata", src: track.audio_url }));
  $("detail-media").replaceChildren(...media);
  const facts = {
    album: track.album, genre: track.genre, "plays in the log": track.plays,
    modalities: Object.entries(track.modalities).filter(([, has]) => has).map(([m]) => m).join(", ") || "none",
    status: track.cold ? "cold: no training plays" : "warm: trained on its plays",
  };
  $("detail-facts").replaceChildren(...Object.entries(facts).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v ?? ""))]));
  const bar = attentionBar(track.attention);
  if (bar) $("detail-facts").append(el("dt", {}, "attention"), el("dd", {}, bar));
  $("similar").replaceChildren(...similar.similar.map((row) => trackRow(row, { rank: row.rank })));
  $("lyrics-box").hidden = !track.lyrics;
  $("lyrics").textContent = track.lyrics || "";
}

async function search(text) {
  const box = $("search-results");
  if (!text.trim()) { box.hidden = true; return; }
  const found = await api(`/search?q=${encodeURIComponent(text)}&limit=10`).catch(() => ({ users: [], tracks: [] }));
  const buttons = [
    ...found.users.map((u) => el("button", { type: "button", on: { click: () => { box.hidden = true; showListener(u); } } }, `listener ${u}`)),
    ...found.tracks.map((t) => el("button", { type: "button", on: { click: () => { box.hidden = true; showTrack(t.item_id); } } }, `${t.artist} – ${t.title}`)),
  ];
  box.replaceChildren(...(buttons.length ? buttons : [el("div", { class: "muted" }, "nothing found")]));
  box.hidden = false;
}

function legend() {
  $("legend").replaceChildren("attention per modality:",
    ...KINDS.flatMap((k) => [el("span", { style: `background:var(--${k})` }), k]));
}

async function start() {
  state.run = await api("/run");
  $("run-name").textContent = `${state.run.run} · ${state.run.items} tracks · ${state.run.users} listeners`;
  legend();
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => {
      document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t === tab));
      state.view = tab.dataset.view;
      showListener(state.user);
    });
  }
  for (const id of ["k", "exclude-seen", "at"]) $(id).addEventListener("change", () => showListener(state.user));
  $("search").addEventListener("input", (e) => search(e.target.value));
  $("search-form").addEventListener("submit", (e) => e.preventDefault());
  const asked = new URLSearchParams(location.search).get("user");
  await showListener(asked || state.run.default_user);
}

start().catch((err) => { $("status").textContent = err.message; $("status").classList.add("error"); });
