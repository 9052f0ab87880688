// The status page: polls api/status every POLL_MS and draws it; plays renders; sends dropped
// files to api/upload. Every text from the server goes in as textContent, never as markup.
"use strict";

const POLL_MS = 2000;
const TEXT_SUFFIXES = [".txt", ".md", ".markdown", ".epub"]; // daemon/book/document.py
const KEY_STORE = "voicedrop-api-key";
const drawn = new Map(); // what each part of the page was last drawn from (JSON)
const players = new Map(); // audio elements by render, kept across redraws so play goes on

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function list(items) {
  const ul = el("ul");
  for (const item of items) ul.append(item instanceof Node ? item : el("li", item));
  return ul;
}

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function askForKey() {
  $("key-box").hidden = false;
}

function errorText(body, response) {
  return (body && body.error && body.error.message) || `${response.status} ${response.statusText}`;
}

async function poll() {
  try {
    const response = await fetch("api/status", { headers: authHeaders(), cache: "no-store" });
    const body = await response.json().catch(() => null);
    if (response.status === 401) {
      askForKey();
      showProblem("The status needs the API key: enter it above.");
    } else if (!response.ok) {
      showProblem(errorText(body, response));
    } else {
      showProblem(null);
      draw(body);
    }
  } catch (error) {
    showProblem(`voicedrop does not answer (${error.message}); is the daemon running?`);
  }
  setTimeout(poll, POLL_MS);
}

function showProblem(message) {
  $("problem").hidden = !message;
  $("problem").textContent = message || "";
}

// Redraw a part only when what it shows changed: no flicker, and audio keeps playing.
function drawPart(id, value, drawFn) {
  const json = JSON.stringify(value);
  if (drawn.get(id) === json) return;
  drawn.set(id, json);
  drawFn(value);
}

function draw(report) {
  const daemon = report.daemon;
  $("daemon").textContent = daemon.running
    ? `daemon running (pid ${daemon.pid})${daemon.config_changed ? "; config.yaml changed: restart it" : ""}`
    : "daemon stopped";
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  drawPart("jobs", [report.jobs, report.queue, report.failed], drawJobs);
  drawPart("voices", [report.voices, report.refused_voices], drawVoices);
  drawPart("models", [report.models, report.fetch], drawModels);
  drawPart("disk", [report.disk, report.chunk_cache], drawDisk);
}

function drawJobs([counts, queue, failed]) {
  $("counts").textContent = Object.entries(counts)
    .map(([state, count]) => `${count} ${state}`)
    .join(", ");
  $("queue").replaceChildren(...queue.map(jobItem));
  $("failed").replaceChildren(
    ...failed.map((job) => jobItem({ ...job, state: "failed" })),
  );
}

function jobItem(job) {
  const item = el("li");
  item.dataset.file = job.file;
  item.append(el("span", job.state, `state ${job.state === "failed" ? "bad" : ""}`), " ");
  item.append(`${job.kind} ${job.voice}/${job.file}`);
  if (job.reason) item.append(el("span", `: ${job.reason}`, job.state === "failed" ? "bad" : "muted"));
  return item;
}

function drawVoices([voices, refused]) {
  const cards = Object.entries(voices).map(([name, voice]) => voiceCard(name, voice));
  for (const [name, why] of Object.entries(refused)) {
    cards.push(el("p", `refused voice folder ${JSON.stringify(name)}: ${why}`, "bad"));
  }
  if (cards.length) $("voices").replaceChildren(...cards);
  $("voice-names").replaceChildren(...Object.keys(voices).map((name) => {
    const option = el("option");
    option.value = name;
    return option;
  }));
  if (!$("drop-voice").value && Object.keys(voices).length === 1) {
    $("drop-voice").value = Object.keys(voices)[0];
  }
}

function voiceCard(name, voice) {
  const card = el("div", undefined, "card voice");
  card.dataset.voice = name;
  card.append(el("h3", name));
  const held = voice.held.length ? ` (${voice.held.length} held back)` : "";
  card.append(el("p", `${voice.clips} clips${held}, ${(voice.duration / 60).toFixed(1)} min of audio`));
  const data = voice.dataset;
  let dataset = `dataset: ${data.train} train / ${data.validation} validation lines, ` +
    `${data.minutes.toFixed(1)} min, language ${data.language || "not yet known"}`;
  if (data.to_transcribe) dataset += `; transcribing ${data.to_transcribe} more (ETA ${Math.round(data.eta_seconds)} s)`;
  card.append(el("p", dataset));
  card.append(el("p", trainingLine(voice.training)));
  if (voice.training.loss_history.length > 1) card.append(lossChart(voice.training.loss_history));
  const notes = [
    ...voice.warnings.map((w) => el("li", `warning: ${w}`, "warn")),
    ...voice.training.warnings.map((w) => el("li", `training: ${w}`, "warn")),
    ...data.problems.map((p) => el("li", `dataset: ${p}`, "warn")),
    ...voice.rejected.map((r) => el("li", `rejected ${r.file}: ${r.reason}`, "bad")),
    ...voice.refused_texts.map((r) => el("li", `refused ${r.file}: ${r.reason}`, "bad")),
    ...voice.flagged_renders.map((f) => el("li", `flagged ${f.file}: ${f.check}`, "warn")),
    ...voice.waiting.map((w) => el("li", `waiting ${w.file}: ${w.reason}`, "muted")),
    ...voice.rendering.map((r) => el("li", `rendering ${r.file}: chunk ${r.chunk}/${r.chunks}` +
      (r.eta_s === null ? "" : `, ETA ${Math.round(r.eta_s)} s`))),
  ];
  if (notes.length) card.append(list(notes));
  if (voice.renders.length) {
    card.append(el("h3", "Latest renders"));
    card.append(list(voice.renders.map((render) => renderItem(name, render))));
  }
  return card;
}

function trainingLine(training) {
  const last = training.last;
  let line = "training: " + (last
    ? `last ${last.finished_at_text}, loss ${(last.losses.loss_total ?? 0).toFixed(3)}`
    : "never fine-tuned");
  const progress = training.progress;
  if (training.state === "running" && progress) {
    line += `; running step ${progress.step}/${progress.total_steps}, loss ${progress.loss_total.toFixed(3)}`;
  } else if (training.state) {
    line += `; ${training.state}: ${training.note || "queued"}`;
  }
  return `${line}; next window ${training.next || "none"}`;
}

function lossChart(points) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 100 100");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  const values = points.flatMap((p) => [p.loss_total, p.val_loss_total]).filter((v) => v != null);
  const [low, high] = [Math.min(...values), Math.max(...values)];
  const [first, last] = [points[0].step, points[points.length - 1].step];
  const x = (step) => ((step - first) / Math.max(last - first, 1)) * 100;
  const y = (value) => 100 - ((value - low) / Math.max(high - low, 1e-9)) * 96 - 2;
  for (const [key, className] of [["loss_total", "train"], ["val_loss_total", "validation"]]) {
    const line = points.filter((p) => p[key] != null).map((p) => `${x(p.step)},${y(p[key])}`);
    if (!line.length) continue;
    const polyline = document.createElementNS(ns, "polyline");
    polyline.setAttribute("class", className);
    polyline.setAttribute("points", line.join(" "));
    svg.append(polyline);
  }
  const title = document.createElementNS(ns, "title");
  title.textContent = `loss by step, ${first}-${last}: ${high.toFixed(3)} to ${low.toFixed(3)}`;
  svg.append(title);
  const figure = el("figure");
  figure.style.margin = "0";
  figure.append(svg, el("figcaption", `loss (blue: training, orange: validation), steps ${first}-${last}, ` +
    `${low.toFixed(3)}-${high.toFixed(3)}`, "muted"));
  return figure;
}

function renderItem(voice, render) {
  const item = el("li", undefined, "render");
  item.append(el("span", `${render.file} (${render.text}, ${render.seconds ?? "?"} s, ${render.rendered_at})`));
  const check = render.check;
  if (check) {
    const scores = `check ${check.passed ? "passed" : `failed chunks ${check.failed_chunks.join(", ")}`}: ` +
      `worst CER ${check.max_cer?.toFixed(2) ?? "-"}, lowest speaker similarity ${check.min_similarity?.toFixed(2) ?? "-"}`;
    item.append(el("div", scores, check.passed ? "ok" : "warn"));
  } else {
    item.append(el("div", "render check off", "muted"));
  }
  item.append(player(`api/renders/${encodeURIComponent(voice)}/${encodeURIComponent(render.file)}`,
    render.rendered_at));
  return item;
}

// The same element while the render is the same, so a redraw does not stop it. Without the
// key an audio element cannot authenticate: where the server asks for it, the audio is
// fetched with the key and played from memory.
function player(url, version) {
  const id = `${url}@${version}`;
  if (players.has(id)) return players.get(id);
  const audio = el("audio");
  audio.controls = true;
  audio.preload = "metadata";
  audio.src = url;
  audio.addEventListener("error", async () => {
    if (audio.src.startsWith("blob:") || !sessionStorage.getItem(KEY_STORE)) return;
    const response = await fetch(url, { headers: authHeaders() });
    if (response.ok) audio.src = URL.createObjectURL(await response.blob());
  });
  players.set(id, audio);
  return audio;
}

function drawModels([models, fetchState]) {
  const items = [];
  if (models.problem) items.push(el("li", models.problem, "bad"));
  if (models.tts) {
    const missing = models.tts.missing.length ? `; missing ${models.tts.missing.join(", ")}` : "";
    items.push(el("li", `TorToiSe: ${models.tts.folder} (${models.tts.source})${missing}`,
      missing ? "warn" : "ok"));
    items.push(models.whisper
      ? el("li", `Whisper: ${models.whisper}`, "ok")
      : el("li", `Whisper: ${models.whisper_problem}`, "bad"));
    items.push(el("li", models.fine_tuning
      ? `fine-tuning: ${models.fine_tuning}` : "fine-tuning: no dvae.pth (`voicedrop models fetch`)",
      models.fine_tuning ? "ok" : "warn"));
  }
  if (fetchState) items.push(el("li", `fetch: ${fetchState.message}`));
  $("models").replaceChildren(...items);
}

function drawDisk([disk, cache]) {
  $("disk").textContent = `${disk.free_gb.toFixed(1)} of ${disk.total_gb.toFixed(1)} GiB free; ` +
    `${cache.chunks} rendered chunks kept, ${cache.gb.toFixed(2)} of ${cache.budget_gb ?? "?"} GiB`;
}

async function upload(file) {
  const voice = $("drop-voice").value.trim();
  const line = el("li", `${file.name}: `);
  $("drop-log").prepend(line);
  if (!voice) {
    line.append(el("span", "name the voice first", "bad"));
    return;
  }
  const isText = TEXT_SUFFIXES.some((suffix) => file.name.toLowerCase().endsWith(suffix));
  const folder = isText ? "outbox" : "inbox";
  const url = `api/upload/${folder}/${encodeURIComponent(voice)}?name=${encodeURIComponent(file.name)}`;
  line.append("sending…");
  try {
    const headers = { ...authHeaders(), "Content-Type": "application/octet-stream" };
    const response = await fetch(url, { method: "POST", body: file, headers });
    const body = await response.json().catch(() => null);
    line.lastChild.remove();
    if (response.ok) {
      line.append(el("span", `in ${body.path}; the daemon takes it from there`, "ok"));
    } else {
      if (response.status === 401) askForKey();
      line.append(el("span", errorText(body, response), "bad"));
    }
  } catch (error) {
    line.lastChild.remove();
    line.append(el("span", `not sent (${error.message})`, "bad"));
  }
}

function setUp() {
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    for (const file of event.dataTransfer.files) upload(file);
  });
  $("drop-files").addEventListener("change", (event) => {
    for (const file of event.target.files) upload(file);
    event.target.value = "";
  });
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORE, $("key").value.trim());
    $("key").value = "";
    $("key-box").hidden = true;
    drawn.clear();
  });
  poll();
}

setUp();
