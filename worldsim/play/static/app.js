// worldsim play: keys → actions, imagined frames live, per-frame likelihood, a timeline that continues exactly from
// any earlier frame. Speaks the WebSocket gateway protocol (bridges/PROTOCOL.md, "WebSocket gateway"); no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const ITEMSIZE = { uint8: 1, float32: 4, int64: 8 };
const MAX_UPLOAD_FRAMES = 8;

// ----- the wire: JSON header, then raw buffers ------------------------------------------------------------------
function encodeMessage(header, buffers = []) {
  const head = { ...header, buffers: buffers.map((b) => ({ dtype: b.dtype, shape: b.shape })) };
  const text = JSON.stringify(head);
  if (!buffers.length) return text;
  const json = new TextEncoder().encode(text);
  const size = buffers.reduce((n, b) => n + b.data.byteLength, 4 + json.length);
  const out = new Uint8Array(size);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 4);
  let offset = 4 + json.length;
  for (const b of buffers) {
    out.set(new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength), offset);
    offset += b.data.byteLength;
  }
  return out.buffer;
}

function decodeMessage(data) {
  if (typeof data === "string") return { header: JSON.parse(data), buffers: [] };
  const n = new DataView(data).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(data, 4, n)));
  const buffers = [];
  let offset = 4 + n;
  for (const spec of header.buffers) {
    const size = spec.shape.reduce((a, b) => a * b, 1) * ITEMSIZE[spec.dtype];
    buffers.push(new Uint8Array(data, offset, size));
    offset += size;
  }
  return { header, buffers };
}

class Gateway {
  constructor(url) {
    this.ws = new WebSocket(url);
    this.ws.binaryType = "arraybuffer";
    this.pending = new Map();
    this.nextId = 1;
    this.opened = new Promise((resolve, reject) => {
      this.ws.onopen = resolve;
      this.ws.onerror = () => reject(new Error("cannot reach the server at " + url));
    });
    this.ws.onmessage = (event) => {
      const { header, buffers } = decodeMessage(event.data);
      const waiter = this.pending.get(header.id);
      if (!waiter) return;
      this.pending.delete(header.id);
      if (header.ok) waiter.resolve({ result: header.result, buffers });
      else waiter.reject(Object.assign(new Error(header.error.message), { code: header.error.code }));
    };
    this.ws.onclose = () => {
      setStatus("the server closed the connection: reload the page", true);
      for (const waiter of this.pending.values()) waiter.reject(new Error("connection closed"));
      this.pending.clear();
    };
  }

  request(op, args = {}, session = null, buffers = []) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(encodeMessage({ v: 1, id, op, session, args }, buffers));
    });
  }
}

// ----- state ------------------------------------------------------------------------------------------------------
const play = {
  ready: false, info: null, branches: [], current: null, pos: 0, busy: false, queue: [], held: new Map(),
  live: false, latencies: [], computeMs: [], stepStarts: [], lastStart: 0, timer: null, origin: "seed 0",
  keymap: new Map(), vector: null, pointer: null, nextBranch: 1, errors: [], steps: 0,
};
window.play = play;  // for tests and the curious: the branches, frames, and the latency figures

const branch = () => play.current;
const last = (b) => b.frames.length - 1;

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
  if (error) play.errors.push(text);
}

function fail(err) {
  setStatus((err.code ? err.code + ": " : "") + err.message, true);
}

// ----- actions: text vocabularies and vectors ----------------------------------------------------------------------
const DIRECTIONS = [
  ["ArrowUp", "w", ["up", "forward", "north"]],
  ["ArrowDown", "s", ["down", "back", "backward", "south"]],
  ["ArrowLeft", "a", ["left", "west"]],
  ["ArrowRight", "d", ["right", "east"]],
  [" ", null, ["stay", "noop", "none", "wait", "idle", "still"]],
];

function buildKeymap(spec) {
  const table = $("keys");
  table.innerHTML = "";
  const row = (keys, what) => {
    const tr = table.insertRow();
    tr.insertCell().innerHTML = keys.map((k) => `<kbd>${k === " " ? "Space" : k.replace("Arrow", "")}</kbd>`).join(" ");
    tr.insertCell().textContent = what;
  };
  if (spec.kind === "vector") return buildVector(spec, row);
  const vocab = spec.vocabulary;
  for (const [key, letter, words] of DIRECTIONS) {
    const phrase = vocab.find((p) => words.some((w) => new RegExp(`\\b${w}\\b`, "i").test(p)));
    if (phrase === undefined) continue;
    play.keymap.set(key, phrase);
    if (letter) play.keymap.set(letter, phrase);
    row(letter ? [key, letter.toUpperCase()] : [key], phrase);
  }
  vocab.slice(0, 9).forEach((phrase, i) => {
    play.keymap.set(String(i + 1), phrase);
    row([String(i + 1)], phrase);
  });
  play.idle = play.keymap.get(" ") ?? null;
}

function buildVector(spec, row) {
  // Keys push components 0 (left/right) and 1 (up/down) to their bounds; dragging on the view sets both; the
  // sliders set any component. The vector sent is shown beside them.
  const v = { low: spec.low, high: spec.high, value: spec.low.map((lo, i) => clamp(0, lo, spec.high[i])) };
  play.vector = v;
  play.idle = [...v.value];
  const axes = [["ArrowLeft", "a", 0, "low"], ["ArrowRight", "d", 0, "high"], ["ArrowUp", "w", 1, "high"],
    ["ArrowDown", "s", 1, "low"]];
  for (const [key, letter, i, end] of axes) {
    if (i >= spec.dim) continue;
    play.keymap.set(key, { i, end });
    play.keymap.set(letter, { i, end });
    row([key, letter.toUpperCase()], `component ${i} → ${end} (${spec[end][i]})`);
  }
  row(["drag"], spec.dim > 1 ? "on the view: components 0 (x) and 1 (y)" : "on the view: component 0 (x)");
  const box = $("vector");
  box.innerHTML = "";
  v.value.forEach((value, i) => {
    const div = document.createElement("div");
    div.className = "component";
    div.innerHTML = `<span>c${i}</span><input type="range" min="${v.low[i]}" max="${v.high[i]}" step="any"
      value="${value}"><output>${value.toFixed(2)}</output>`;
    div.querySelector("input").addEventListener("input", (e) => { v.value[i] = Number(e.target.value); showVector(); });
    box.appendChild(div);
  });
}

function clamp(x, lo, hi) { return Math.min(hi, Math.max(lo, x)); }

function currentVector() {
  const v = play.vector;
  const value = [...v.value];
  for (const act of play.held.values()) value[act.i] = v[act.end][act.i];
  if (play.pointer) {
    play.pointer.forEach((u, i) => { if (i < value.length) value[i] = v.low[i] + (u + 1) / 2 * (v.high[i] - v.low[i]); });
  }
  return value;
}

function showVector(value = currentVector()) {
  document.querySelectorAll("#vector output").forEach((out, i) => { out.textContent = value[i].toFixed(2); });
}

function heldAction() {
  if (play.vector) return play.held.size || play.pointer ? currentVector() : null;
  const keys = [...play.held.keys()];
  return keys.length ? play.keymap.get(keys[keys.length - 1]) : null;
}

const describe = (a) => (a === null || a === undefined ? "—" : Array.isArray(a) ? `[${a.map((x) => x.toFixed(2)).join(", ")}]` : a);

// ----- frames on screen ---------------------------------------------------------------------------------------------
const small = document.createElement("canvas");

function draw() {
  const b = branch();
  if (!b) return;
  const { height: h, width: w } = play.info;
  const rgb = b.frames[play.pos];
  const img = new ImageData(w, h);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    img.data[j] = rgb[i]; img.data[j + 1] = rgb[i + 1]; img.data[j + 2] = rgb[i + 2]; img.data[j + 3] = 255;
  }
  small.width = w; small.height = h;
  small.getContext("2d").putImageData(img, 0, 0);
  const view = $("view").getContext("2d");
  view.imageSmoothingEnabled = false;  // nearest neighbour: crisp pixels
  view.drawImage(small, 0, 0, $("view").width, $("view").height);
  $("scrub").max = last(b);
  $("scrub").value = play.pos;
  $("position").textContent = `frame ${play.pos} / ${last(b)}`;
  showStats();
  plot();
}

function showStats() {
  const b = branch();
  const s = b.stats[play.pos];
  const unit = play.info.likelihood_space === "latents" ? "latent " : "";
  const rows = [["branch", b.name], ["frame", `${play.pos} of ${last(b)}`], ["action", describe(b.actions[play.pos])]];
  if (s && s.log_prob !== undefined) {
    rows.push(["log p", `${s.log_prob.toFixed(1)} nats: exact, of the sampled ${play.info.likelihood_space}`]);
    rows.push(["surprise", `${s.bits_per_dim.toFixed(3)} ${unit}bits/dim`]);
    rows.push(["Jacobi", `${s.iterations} passes`]);
  } else rows.push(["log p", "— (a given frame)"]);
  const v = s && s.verdict;
  if (v) {
    const word = v.implausible ? "implausible" : "plausible";
    rows.push(["verdict", `<span class="${word}">${word}</span>: scored as a real frame, ${v.bits_per_dim.toFixed(3)} ` +
      `${unit}bits/dim, percentile ${v.percentile.toFixed(0)} among real frames (z ${v.z_score.toFixed(2)}; ` +
      `flagged above ${v.threshold_bits_per_dim.toFixed(3)})`]);
  } else {
    rows.push(["verdict", play.info.websocket.calibrated ? "—" : "— (the model has no calibration)"]);
  }
  $("stats").innerHTML = rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("");
}

function quantile(values, q) {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

function showSpeed() {
  const ms = play.computeMs.slice(-32);
  const starts = play.stepStarts.slice(-17);
  const rate = starts.length > 1 ? (starts.length - 1) * 1000 / (starts[starts.length - 1] - starts[0]) : NaN;
  const lat = play.latencies;
  const f = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : "—");
  $("speed").innerHTML = [
    ["model", `${f(quantile(ms, 0.5))} ms a frame (${f(1000 / quantile(ms, 0.5), 1)} fps; the model's rate is ${play.info.fps} fps)`],
    ["shown", `${f(rate, 1)} frames/s`],
    ["key → screen", `last ${f(lat[lat.length - 1])} ms · median ${f(quantile(lat, 0.5))} · p95 ${f(quantile(lat, 0.95))} (${lat.length} presses)`],
  ].map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("");
}

function plot() {
  const canvas = $("plot");
  const ctx = canvas.getContext("2d");
  const b = branch();
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  // the frames scored as real ones (comparable with the threshold) where the model is calibrated, else as sampled
  // (frames after the first: a first frame is scored against first frames, on another scale)
  const values = b.stats.map((s, i) => (s && i > 0 ? (s.verdict ? s.verdict.bits_per_dim : s.bits_per_dim ?? null) : null));
  const known = values.filter((x) => x !== null);
  const threshold = [...b.stats].reverse().find((s) => s && s.verdict)?.verdict.threshold_bits_per_dim;
  if (threshold !== undefined) known.push(threshold);
  if (!known.length) return;
  const lo = Math.min(...known), hi = Math.max(...known) + 1e-9;
  const x = (i) => 4 + i * (canvas.width - 8) / Math.max(1, values.length - 1);
  const y = (v) => canvas.height - 6 - (v - lo) / (hi - lo) * (canvas.height - 16);
  if (threshold !== undefined) {
    ctx.strokeStyle = "#ff7b72"; ctx.setLineDash([4, 4]); ctx.beginPath();
    ctx.moveTo(0, y(threshold)); ctx.lineTo(canvas.width, y(threshold)); ctx.stroke(); ctx.setLineDash([]);
  }
  ctx.strokeStyle = "#6cb6ff"; ctx.beginPath();
  let started = false;
  values.forEach((v, i) => {
    if (v === null) return;
    if (started) ctx.lineTo(x(i), y(v)); else { ctx.moveTo(x(i), y(v)); started = true; }
  });
  ctx.stroke();
  ctx.fillStyle = "#e6e6e6";
  ctx.fillRect(x(play.pos) - 1, 0, 2, canvas.height);
  ctx.fillStyle = "#9aa0aa";
  ctx.fillText(`bits/dim ${lo.toFixed(2)}–${hi.toFixed(2)}${threshold !== undefined ? " · red: implausible above" : ""}`, 6, 12);
}

// ----- branches ---------------------------------------------------------------------------------------------------
function addBranch(b) {
  play.branches.push(b);
  play.current = b;
  play.pos = last(b);
  showBranches();
  draw();
}

function showBranches() {
  const list = $("branches");
  list.innerHTML = "";
  for (const b of play.branches) {
    const li = document.createElement("li");
    li.className = b === play.current ? "current" : "";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `${b.name}: ${b.frames.length} frames${b.note ? " · " + b.note : ""}`;
    name.onclick = () => { play.current = b; play.pos = last(b); showBranches(); draw(); };
    li.appendChild(name);
    const close = document.createElement("button");
    close.className = "close";
    close.textContent = "×";
    close.title = "close this branch (frees its session)";
    close.onclick = (e) => { e.stopPropagation(); closeBranch(b); };
    if (play.branches.length > 1) li.appendChild(close);
    list.appendChild(li);
  }
}

async function closeBranch(b) {
  play.branches = play.branches.filter((x) => x !== b);
  if (play.current === b) { play.current = play.branches[play.branches.length - 1]; play.pos = last(play.current); }
  showBranches();
  draw();
  try { await play.gw.request("close", {}, b.token); } catch (err) { fail(err); }
}

async function makeRoom() {
  // One session per branch; a tab may hold `max_sessions_per_client` of them: the oldest other branch goes first.
  const limit = play.info.limits.max_sessions_per_client;
  while (play.branches.length >= limit) await closeBranch(play.branches.find((b) => b !== play.current));
}

async function forkAt(b, frames) {
  await makeRoom();
  const { result } = await play.gw.request("fork", { frames }, b.token);
  const child = {
    token: result.session, name: `branch ${play.nextBranch++}`, origin: b.origin,
    frames: b.frames.slice(0, frames), actions: b.actions.slice(0, frames), stats: b.stats.slice(0, frames),
    note: `from ${b.name} at frame ${frames - 1}` + (result.replayed ? `, ${result.replayed} frames re-run` : "") +
      (result.exact ? "" : " (NOT identical)"),
  };
  play.lastFork = result;
  addBranch(child);
  return child;
}

// ----- stepping ---------------------------------------------------------------------------------------------------
function pump() {
  clearTimeout(play.timer);
  if (play.busy || !play.ready) return;
  if (play.queue.length) { const { action, t0 } = play.queue.shift(); step(action, t0); return; }
  const action = heldAction() ?? (play.live ? play.idle : null);
  if (action === null) return;
  const wait = play.lastStart + 1000 / play.info.fps - performance.now();  // at most the model's frame rate
  if (wait > 0) { play.timer = setTimeout(pump, wait); return; }
  step(action, null);
}

async function step(action, t0) {
  play.busy = true;
  try {
    let b = branch();
    if (play.pos < last(b)) b = await forkAt(b, play.pos + 1);  // continue from the scrubbed frame, on a new branch
    play.lastStart = performance.now();
    play.stepStarts.push(play.lastStart);
    const { result, buffers } = await play.gw.request("step", { action }, b.token);
    b.frames.push(buffers[0].slice());
    b.actions.push(action);
    b.stats.push(result);
    play.computeMs.push(result.compute_ms);
    play.steps += 1;
    if (b === play.current) { play.pos = last(b); draw(); }
    showBranches();
    await new Promise((resolve) => requestAnimationFrame(resolve));  // the frame is on screen from here
    if (t0 !== null) play.latencies.push(performance.now() - t0);
    showSpeed();
    setStatus("");
  } catch (err) {
    fail(err);
  } finally {
    play.busy = false;
    pump();
  }
}

function press(key, event) {
  const mapped = play.keymap.get(key);
  if (mapped === undefined) return false;
  if (event.repeat) return true;
  if (play.vector) {
    play.held.set(key, mapped);
    play.queue.push({ action: currentVector(), t0: event.timeStamp });
    showVector();
  } else {
    play.held.set(key, mapped);
    if (play.queue.length < 4) play.queue.push({ action: mapped, t0: event.timeStamp });
  }
  pump();
  return true;
}

document.addEventListener("keydown", (event) => {
  const t = event.target;
  if (t instanceof HTMLInputElement && (t.type === "number" || t.type === "text")) return;
  if (event.ctrlKey || event.metaKey || event.altKey || !play.ready) return;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  if (press(key === " " ? " " : key, event)) event.preventDefault();
});
document.addEventListener("keyup", (event) => {
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  play.held.delete(key);
  if (play.vector) showVector();
});
window.addEventListener("blur", () => play.held.clear());

function pointerAt(event) {
  const r = $("view").getBoundingClientRect();
  play.pointer = [clamp((event.clientX - r.left) / r.width * 2 - 1, -1, 1), clamp(1 - (event.clientY - r.top) / r.height * 2, -1, 1)];
  showVector();
}
$("view").addEventListener("pointerdown", (e) => {
  $("view").focus();
  if (!play.vector || !play.ready) return;
  $("view").setPointerCapture(e.pointerId);
  pointerAt(e);
  play.queue.push({ action: currentVector(), t0: e.timeStamp });
  pump();
});
$("view").addEventListener("pointermove", (e) => { if (play.pointer) pointerAt(e); });
$("view").addEventListener("pointerup", () => { play.pointer = null; if (play.vector) showVector(); });

// ----- timeline ---------------------------------------------------------------------------------------------------
$("scrub").addEventListener("input", (e) => { play.pos = Number(e.target.value); draw(); });

$("play-back").onclick = () => {
  const b = branch();
  const tick = () => {
    if (branch() !== b || play.pos >= last(b)) return;
    play.pos += 1;
    draw();
    setTimeout(tick, 1000 / play.info.fps);
  };
  if (play.pos >= last(b)) play.pos = b.stats.findIndex((s) => s) > 0 ? b.stats.findIndex((s) => s) - 1 : 0;
  tick();
};

$("fork").onclick = async () => {
  const b = branch();
  try { await forkAt(b, play.pos + 1); } catch (err) { fail(err); }
};

$("rerun").onclick = async () => {
  // The rest of this branch again, with its own actions, from the frame shown: every frame must come back bit for bit.
  const b = branch();
  if (play.busy || play.pos >= last(b)) return;
  play.busy = true;
  const from = play.pos;
  try {
    const child = await forkAt(b, from + 1);
    child.note += `, re-running ${last(b) - from} frames`;
    let same = 0;
    for (let k = from + 1; k <= last(b); k++) {
      const { result, buffers } = await play.gw.request("step", { action: b.actions[k] }, child.token);
      child.frames.push(buffers[0].slice()); child.actions.push(b.actions[k]); child.stats.push(result);
      same += buffers[0].every((x, i) => x === b.frames[k][i]) ? 1 : 0;
      play.pos = last(child);
      draw();
    }
    child.note = `re-run of ${b.name} from frame ${from}: ${same} of ${last(b) - from} frames identical`;
    play.rerun = { same, total: last(b) - from };
    showBranches();
  } catch (err) {
    fail(err);
  } finally {
    play.busy = false;
  }
};

$("download").onclick = async () => {
  const b = branch();
  const name = `worldsim-play-${b.origin.replace(/[^A-Za-z0-9]+/g, "")}-${b.name.replace(/ /g, "")}`;
  try {
    const { result, buffers } = await play.gw.request("export", { name }, b.token);
    save(new Blob([buffers[0]], { type: "video/mp4" }), result.video);
    save(new Blob([result.jsonl], { type: "application/x-ndjson" }), result.jsonl_name);
    setStatus(`saved ${result.video} and ${result.jsonl_name} (${result.frames} frames)`);
  } catch (err) {
    fail(err);
  }
};

function save(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

// ----- starting a world -------------------------------------------------------------------------------------------
async function start(frames, origin) {
  // frames: Uint8Array (t0·H·W·3) of real frames; a new session (with a timeline) reset on them.
  play.ready = false;
  const { height: h, width: w } = play.info;
  const t0 = frames.length / (h * w * 3);
  for (const b of play.branches) play.gw.request("close", {}, b.token).catch(() => {});
  play.branches = [];
  const seed = Number($("seed").value) || 0;
  const { result } = await play.gw.request("create", { seed, timeline: true, judge: true });
  const reset = await play.gw.request("reset", {}, result.session, [{ dtype: "uint8", shape: [t0, h, w, 3], data: frames }]);
  const b = { token: result.session, name: `branch ${play.nextBranch++}`, origin, frames: [], actions: [], stats: [], note: origin };
  for (let i = 0; i < t0; i++) { b.frames.push(frames.slice(i * h * w * 3, (i + 1) * h * w * 3)); b.actions.push(null); b.stats.push(null); }
  if (reset.result.verdict) b.stats[t0 - 1] = { verdict: reset.result.verdict };
  addBranch(b);
  play.ready = true;
  setStatus(`ready: ${origin}; press a key`);
  $("view").focus();
}

async function newWorld() {
  const seed = Number($("seed").value) || 0;
  try {
    const { buffers } = await play.gw.request("world_frame", { seed });
    await start(buffers[0].slice(), `seed ${seed}`);
  } catch (err) {
    fail(err);
  }
}

function pixels(source, w, h) {
  const canvas = document.createElement("canvas");
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(source, 0, 0, w, h);
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const rgb = new Uint8Array(w * h * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) { rgb[j] = rgba[i]; rgb[j + 1] = rgba[i + 1]; rgb[j + 2] = rgba[i + 2]; }
  return rgb;
}

async function upload(file) {
  const { height: h, width: w, fps } = play.info;
  const url = URL.createObjectURL(file);
  try {
    let frames;
    if (file.type.startsWith("video/")) {
      const video = document.createElement("video");
      video.muted = true;
      video.src = url;
      await new Promise((resolve, reject) => { video.onloadeddata = resolve; video.onerror = () => reject(new Error("cannot decode this video")); });
      const n = Math.max(1, Math.min(MAX_UPLOAD_FRAMES, Math.floor(video.duration * fps)));
      const parts = [];
      for (let i = 0; i < n; i++) {
        video.currentTime = i / fps;
        await new Promise((resolve) => { video.onseeked = resolve; });
        parts.push(pixels(video, w, h));
      }
      frames = new Uint8Array(n * w * h * 3);
      parts.forEach((p, i) => frames.set(p, i * w * h * 3));
    } else {
      const img = new Image();
      img.src = url;
      await img.decode();
      frames = pixels(img, w, h);
    }
    await start(frames, file.name);
  } catch (err) {
    fail(err);
  } finally {
    URL.revokeObjectURL(url);
  }
}

$("new-world").onclick = newWorld;
$("upload").onchange = (e) => { if (e.target.files.length) upload(e.target.files[0]); };
$("live").onchange = (e) => { play.live = e.target.checked; pump(); };

async function main() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  play.gw = new Gateway(scheme + location.host + "/ws");
  try {
    await play.gw.opened;
    const { result } = await play.gw.request("hello");
    play.info = result;
    const spec = result.action_spec;
    $("model").textContent = `${result.served} · ${result.width}×${result.height} at ${result.fps} fps · ` +
      (spec.kind === "vector" ? `vector actions (d=${spec.dim})` : `${spec.vocabulary.length} text actions`) +
      ` · likelihood over ${result.likelihood_space}` + (result.websocket.calibrated ? " · calibrated" : "");
    buildKeymap(spec);
    await newWorld();
  } catch (err) {
    fail(err);
  }
}

main();
