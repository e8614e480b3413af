// archzoo's in-browser page: the exported model run by onnxruntime-web (WebAssembly), on this machine.
// Preprocessing follows meta.json exactly as `archzoo predict` does it: the picture composited on
// white, resized (or shorter side resized, then centre-cropped), scaled to 0..1, normalised with mean/std.
"use strict";
const $ = (id) => document.getElementById(id);
const SCORE_THRESHOLD = 0.3;  // detectors: as `archzoo predict`'s default
let session = null, meta = null;

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}

async function start() {
  meta = await (await fetch("meta.json")).json();
  ort.env.wasm.wasmPaths = new URL("ort/", location.href).href;
  ort.env.wasm.numThreads = 1;  // threads need cross-origin isolation, which a plain static server lacks
  session = await ort.InferenceSession.create("model.onnx", {executionProviders: ["wasm"]});
  const [c, h, w] = meta.input_size;
  $("title").textContent = `${meta.model} in the browser`;
  $("about").textContent = `${meta.task}, ${meta.class_names.length} classes, input ${c}x${h}x${w}; ` +
                           `onnxruntime-web ${meta.onnxruntime_web || ""} (WebAssembly)`;
  $("file").disabled = false;
  document.body.dataset.ready = "1";
}

// the picture as uint8 RGBA at its own size, alpha composited onto white (as archzoo's decoder does)
async function decode(file) {
  const bitmap = await createImageBitmap(file, {colorSpaceConversion: "none", premultiplyAlpha: "none",
                                                imageOrientation: "from-image"});
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width; canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(bitmap, 0, 0);
  return canvas;
}

// the model's input canvas: resize [h, w], or shorter side resized then the centre cropped
function fit(src) {
  const p = meta.preprocessing || {}, [, h, w] = meta.input_size;
  const out = document.createElement("canvas");
  out.width = w; out.height = h;
  const ctx = out.getContext("2d");
  ctx.imageSmoothingEnabled = true; ctx.imageSmoothingQuality = "high";
  if (p.resize_shorter_side) {
    const s = p.resize_shorter_side / Math.min(src.width, src.height);
    const rw = Math.max(p.resize_shorter_side, Math.round(src.width * s));
    const rh = Math.max(p.resize_shorter_side, Math.round(src.height * s));
    const mid = document.createElement("canvas");
    mid.width = rw; mid.height = rh;
    const m = mid.getContext("2d");
    m.imageSmoothingEnabled = true; m.imageSmoothingQuality = "high";
    m.drawImage(src, 0, 0, rw, rh);
    ctx.drawImage(mid, Math.floor((rw - w) / 2), Math.floor((rh - h) / 2), w, h, 0, 0, w, h);
  } else if (src.width === w && src.height === h) {
    ctx.drawImage(src, 0, 0);
  } else {
    ctx.drawImage(src, 0, 0, w, h);
  }
  return out;
}

function toTensor(canvas) {
  const [c, h, w] = meta.input_size, px = canvas.getContext("2d").getImageData(0, 0, w, h).data;
  const data = new Float32Array(c * h * w);
  for (let i = 0; i < h * w; i++) {
    const r = px[4 * i], g = px[4 * i + 1], b = px[4 * i + 2];
    // grey models: Pillow's luma, L = R * 299/1000 + G * 587/1000 + B * 114/1000
    const values = c === 1 ? [Math.round((r * 299 + g * 587 + b * 114) / 1000)] : [r, g, b];
    for (let k = 0; k < c; k++) data[k * h * w + i] = (values[k] / 255 - meta.mean[k]) / meta.std[k];
  }
  return new ort.Tensor("float32", data, [1, c, h, w]);
}

function softmax(logits) {
  const m = Math.max(...logits), e = logits.map((v) => Math.exp(v - m)), s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

function classify(out) {
  const probs = softmax(Array.from(out.logits.data));
  const order = probs.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]).slice(0, 5);
  return {top: order.map(([p, i]) => ({class: meta.class_names[i], index: i, probability: p}))};
}

function segment(out) {
  const [, k, h, w] = out.logits.dims, d = out.logits.data, counts = new Array(k).fill(0);
  for (let i = 0; i < h * w; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (d[j * h * w + i] > d[best * h * w + i]) best = j;
    counts[best]++;
  }
  const top = counts.map((n, i) => ({class: meta.class_names[i], index: i, share: n / (h * w)}))
    .filter((t) => t.share > 0).sort((a, b) => b.share - a.share);
  return {top};
}

function detect(out, src) {
  const [, h, w] = meta.input_size, sx = src.width / w, sy = src.height / h;
  const boxes = out.boxes.data, scores = out.scores.data, labels = out.labels.data, found = [];
  for (let i = 0; i < scores.length; i++) {
    if (scores[i] < SCORE_THRESHOLD) continue;
    const b = [boxes[4 * i] * sx, boxes[4 * i + 1] * sy, boxes[4 * i + 2] * sx, boxes[4 * i + 3] * sy];
    const clip = b.map((v, j) => Math.min(Math.max(v, 0), j % 2 ? src.height : src.width));
    const index = Number(labels[i]);
    found.push({label: meta.class_names[index], index, score: scores[i], box: clip.map((v) => Math.round(v * 10) / 10)});
  }
  found.sort((a, b) => b.score - a.score);
  return {detections: found.slice(0, 100)};
}

function show(src, result) {
  const pic = $("picture"), ctx = pic.getContext("2d");
  pic.width = src.width; pic.height = src.height;
  ctx.drawImage(src, 0, 0);
  let html;
  if (result.detections) {
    ctx.lineWidth = Math.max(1, Math.round(src.width / 200)); ctx.strokeStyle = "#e33"; ctx.fillStyle = "#e33";
    ctx.font = `${Math.max(10, Math.round(src.width / 40))}px sans-serif`;
    html = "<table id='top'><tr><th>#</th><th>class</th><th>score</th><th>box</th></tr>";
    result.detections.forEach((d, i) => {
      const [x1, y1, x2, y2] = d.box;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      ctx.fillText(`${d.label} ${d.score.toFixed(2)}`, x1 + 2, Math.max(y1 - 2, 10));
      html += `<tr data-class="${esc(d.label)}" data-value="${d.score}"><td>${i + 1}</td><td class="cls">${esc(d.label)}</td>` +
              `<td class="num">${d.score.toFixed(4)}</td><td>${d.box.join(" ")}</td></tr>`;
    });
  } else {
    const key = meta.task === "segmentation" ? "share" : "probability";
    html = `<table id='top'><tr><th>#</th><th>class</th><th>${key}</th></tr>`;
    result.top.slice(0, 5).forEach((t, i) => {
      html += `<tr data-class="${esc(t.class)}" data-value="${t[key]}"><td>${i + 1}</td><td class="cls">${esc(t.class)}</td>` +
              `<td class="num">${(100 * t[key]).toFixed(2)}%</td></tr>`;
    });
  }
  $("result").innerHTML = html + "</table>";
}

async function run(file) {
  $("error").textContent = "";
  $("status").textContent = `${file.name}: running…`;
  try {
    const src = await decode(file), x = toTensor(fit(src));
    const t0 = performance.now();
    const out = await session.run({[session.inputNames[0]]: x});
    const ms = performance.now() - t0;
    const result = meta.task === "detection" ? detect(out, src) : meta.task === "segmentation" ? segment(out) : classify(out);
    window.archzooResult = result;
    show(src, result);
    $("status").textContent = `${file.name}: ${ms.toFixed(1)} ms in the browser`;
    document.body.dataset.done = String(Number(document.body.dataset.done || 0) + 1);
  } catch (e) {
    $("error").textContent = String(e && e.message || e);
    $("status").textContent = "failed";
  }
}

$("file").addEventListener("change", (e) => { if (e.target.files.length) run(e.target.files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  if (session && e.dataTransfer.files.length) run(e.dataTransfer.files[0]);
});
start().catch((e) => { $("error").textContent = "cannot load the model: " + (e && e.message || e); });
