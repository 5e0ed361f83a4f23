// emovision page: upload or record audio, POST it to /api/predict, draw the answer.
// Recording uses the Web Audio API (an AudioWorklet collects PCM) and encodes 16-bit WAV here,
// because browsers' MediaRecorder makes WebM/Opus, which the server's decoder does not read.
"use strict";

const PALETTE = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
];
// Colour map of the spectrogram (dark = quiet, bright = loud), interpolated between stops.
const STOPS = [[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]];

const state = {
  classes: [], maxSeconds: 300, maxBytes: 32 * 1024 * 1024, recorder: null, speakerKey: null, enrolled: 0,
  explainable: false, last: null,
};
const SPEAKER_ITEM = "emovision-speaker";
const $ = (id) => document.getElementById(id);

function setState(name) {
  document.body.dataset.state = name;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function busy(flag) {
  $("file").disabled = flag;
  if (!state.recorder) $("record").disabled = flag;
}

function colour(name) {
  const index = state.classes.indexOf(name);
  return PALETTE[(index < 0 ? 0 : index) % PALETTE.length];
}

async function loadModel() {
  try {
    const response = await fetch("/api/health");
    const health = await response.json();
    state.classes = health.classes;
    state.maxSeconds = health.max_seconds;
    state.maxBytes = health.max_upload_bytes;
    if (health.speaker_normalised) useSpeakerKey();
    state.explainable = Boolean(health.explainable);
    $("explain-control").hidden = !state.explainable;
    $("model").textContent =
      `Model ${health.model} (${health.backend}), classes: ${health.classes.join(", ")}. ` +
      `Up to ${health.max_seconds} s and ${(health.max_upload_bytes / 1048576).toFixed(0)} MB per recording.`;
    setState("ready");
  } catch (error) {
    setStatus(`The server does not answer: ${error.message}`, true);
    setState("error");
  }
}

// One speaker key per browser tab (sessionStorage): the server normalises each upload by the
// recordings this tab sent before, then adds it to them. "Start over" forgets them on the server.
function newKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Array.from({ length: 4 }, () => Math.random().toString(36).slice(2, 10)).join("-");
}

function useSpeakerKey() {
  state.speakerKey = sessionStorage.getItem(SPEAKER_ITEM) || newKey();
  sessionStorage.setItem(SPEAKER_ITEM, state.speakerKey);
  $("speaker").hidden = false;
}

function showEnrolment(speaker) {
  if (!speaker) return;
  state.enrolled = speaker.recordings + 1;
  const how = speaker.mode === "cold"
    ? "this recording was scored by itself"
    : `this recording was normalised by ${speaker.recordings} earlier recording(s) ` +
      `(${speaker.seconds.toFixed(1)} s) of the same speaker`;
  $("enrolled").textContent = `This tab's speaker: ${state.enrolled} recording(s) enrolled; ${how}.`;
}

async function startOver() {
  if (!state.speakerKey) return;
  await fetch(`/api/speakers/${encodeURIComponent(state.speakerKey)}`, { method: "DELETE" }).catch(() => null);
  state.speakerKey = newKey();
  state.enrolled = 0;
  sessionStorage.setItem(SPEAKER_ITEM, state.speakerKey);
  $("enrolled").textContent = "This tab's speaker: no recording yet; the first is scored by itself.";
}

async function predict(blob, filename) {
  if (blob.size === 0) {
    setStatus(`${filename} is empty.`, true);
    setState("error");
    return;
  }
  if (blob.size > state.maxBytes) {
    setStatus(`${filename} is larger than the limit of ${(state.maxBytes / 1048576).toFixed(0)} MB.`, true);
    setState("error");
    return;
  }
  setStatus(`Analysing ${filename}…`);
  setState("busy");
  busy(true);
  const form = new FormData();
  form.append("file", blob, filename);
  try {
    const minConfidence = Math.min(1, Math.max(0, Number($("min-confidence").value) || 0));
    let query = `spectrogram=true&turns=true&min_confidence=${minConfidence}`;
    if (state.speakerKey) query += `&speaker=${encodeURIComponent(state.speakerKey)}`;
    if (state.explainable) query += "&explain=true";
    const response = await fetch(`/api/predict?${query}`, { method: "POST", body: form });
    const body = await response.json().catch(() => ({ detail: `HTTP ${response.status}` }));
    if (!response.ok) {
      throw new Error(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
    }
    show(body);
    showEnrolment(body.speaker);
    setStatus(`Analysed ${filename}.`);
    setState("done");
  } catch (error) {
    setStatus(error.message, true);
    setState("error");
  } finally {
    busy(false);
  }
}

function show(result) {
  state.last = result;
  if (state.classes.length === 0) state.classes = Object.keys(result.probabilities);
  $("result").hidden = false;
  $("emotion").textContent = result.emotion;
  $("confidence").textContent = `${(100 * result.confidence).toFixed(1)} %`;
  $("source").textContent =
    `${result.file}: ${result.duration.toFixed(2)} s, ${result.segments.length} segment(s)`;
  drawBars(result.probabilities, result.emotion);
  drawSpectrogram(result.spectrogram, result.segments, $("explain").checked ? result.explanation : null);
  drawTimeline(result.segments, result.duration);
  drawTurns(result.turns || [], result.duration);
}

// One block per speech turn in its emotion's colour, uncertain turns grey and hatched; silence empty.
function drawTurns(turns, duration) {
  const canvas = $("turns");
  const context = canvas.getContext("2d");
  const { width, height } = canvas;
  const left = 40;
  const plotWidth = width - left - 28;
  const total = Math.max(duration, ...turns.map((t) => t.end)) || 1;
  const x = (t) => left + (t / total) * plotWidth;
  context.clearRect(0, 0, width, height);
  context.font = "12px system-ui, sans-serif";
  for (const turn of turns) {
    const from = x(turn.start);
    const size = Math.max(2, x(turn.end) - from);
    const uncertain = turn.emotion === "uncertain";
    context.fillStyle = uncertain ? "#b8bfcc" : colour(turn.emotion);
    context.fillRect(from, 4, size, height - 8);
    if (uncertain) {
      context.strokeStyle = "#7d8696";
      for (let hatch = from - height; hatch < from + size; hatch += 8) {
        context.beginPath();
        context.moveTo(Math.max(from, hatch), 4 + Math.max(0, from - hatch));
        context.lineTo(Math.min(from + size, hatch + height - 8), 4 + Math.min(height - 8, from + size - hatch));
        context.stroke();
      }
    }
    const label = `${turn.emotion} ${(100 * turn.confidence).toFixed(0)} %`;
    if (context.measureText(label).width + 8 < size) {
      context.fillStyle = uncertain ? "#1d2330" : "#fff";
      context.fillText(label, from + 4, height / 2 + 4);
    }
  }
  const unsure = turns.filter((t) => t.emotion === "uncertain").length;
  $("turns-note").textContent = turns.length
    ? `${turns.length} speech turn(s), ${unsure} uncertain; gaps are silence, which is not scored.`
    : "No speech turns.";
}

function drawBars(probabilities, winner) {
  const container = $("probabilities");
  container.replaceChildren();
  for (const name of state.classes) {
    const p = probabilities[name] ?? 0;
    const row = document.createElement("div");
    row.className = name === winner ? "row top" : "row";
    row.dataset.class = name;
    row.dataset.probability = String(p);
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = `${(100 * p).toFixed(2)}%`;
    fill.style.background = colour(name);
    track.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(100 * p).toFixed(1)} %`;
    row.append(label, track, value);
    container.append(row);
  }
  const legend = $("legend");
  legend.replaceChildren();
  for (const name of state.classes) {
    const item = document.createElement("span");
    item.textContent = name;
    item.style.setProperty("--colour", colour(name));
    legend.append(item);
  }
}

function mapColour(value) {
  const x = (value / 255) * (STOPS.length - 1);
  const i = Math.min(Math.floor(x), STOPS.length - 2);
  const t = x - i;
  return STOPS[i].map((c, k) => Math.round(c + t * (STOPS[i + 1][k] - c)));
}

// With an explanation, the spectrogram turns grey and the saliency map is laid over it in colour.
function drawSpectrogram(spectrogram, segments, explanation = null) {
  const canvas = $("spectrogram");
  if (!spectrogram) return;
  const { width, height } = spectrogram;
  const levels = Uint8Array.from(atob(spectrogram.data), (c) => c.charCodeAt(0));
  const map = explanation ? Uint8Array.from(atob(explanation.map.data), (c) => c.charCodeAt(0)) : null;
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  const lut = Array.from({ length: 256 }, (_, v) => mapColour(v));
  for (let i = 0; i < levels.length; i++) {
    if (map) {
      const grey = 40 + 0.5 * levels[i];
      const [r, g, b] = lut[map[i]];
      const a = map[i] / 255;
      image.data.set([grey + a * (r - grey), grey + a * (g - grey), grey + a * (b - grey), 255], 4 * i);
    } else {
      const [r, g, b] = lut[levels[i]];
      image.data.set([r, g, b, 255], 4 * i);
    }
  }
  context.putImageData(image, 0, 0);
  context.strokeStyle = "rgba(255, 255, 255, 0.7)";
  context.setLineDash([4, 4]);
  for (const segment of segments.slice(1)) {
    const x = Math.round((segment.start / spectrogram.seconds) * width) + 0.5;
    context.beginPath();
    context.moveTo(x, 0);
    context.lineTo(x, height);
    context.stroke();
  }
  $("spectrogram-note").textContent = explanation
    ? `Where the decision for ${explanation.explained} came from (${explanation.method}): bright ` +
      "regions weighed most, grey ones little; dashed lines: segment starts."
    : `${spectrogram.kind}, ${height} rows (low frequencies at the bottom), ` +
      `${spectrogram.seconds.toFixed(2)} s, dB from ${spectrogram.floor_db} (dark) to 0 (bright); ` +
      "dashed lines: segment starts.";
}

function drawTimeline(segments, duration) {
  const canvas = $("timeline");
  const context = canvas.getContext("2d");
  const { width, height } = canvas;
  const left = 40;
  const bottom = 22;
  const plotWidth = width - left - 28;
  const plotHeight = height - bottom - 8;
  const total = Math.max(duration, ...segments.map((s) => s.end)) || 1;
  const x = (t) => left + (t / total) * plotWidth;
  context.clearRect(0, 0, width, height);
  for (const segment of segments) {
    let y = 8 + plotHeight;
    for (const name of state.classes) {
      const h = (segment.probabilities[name] ?? 0) * plotHeight;
      context.fillStyle = colour(name);
      context.fillRect(x(segment.start), y - h, Math.max(1, x(segment.end) - x(segment.start) - 1), h);
      y -= h;
    }
  }
  context.fillStyle = "#1d2330";
  context.font = "11px system-ui, sans-serif";
  context.fillText("1", left - 14, 16);
  context.fillText("0", left - 14, 8 + plotHeight);
  const step = niceStep(total / 8);
  for (let t = 0; t <= total + 1e-9; t += step) {
    context.fillRect(x(t), 8 + plotHeight, 1, 4);
    context.fillText(`${+t.toFixed(2)} s`, x(t) - 8, height - 4);
  }
}

function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const factor of [1, 2, 5, 10]) {
    if (factor * power >= raw) return factor * power;
  }
  return 10 * power;
}

function encodeWav(samples, sampleRate) {
  const buffer = new ArrayBuffer(44 + 2 * samples.length);
  const view = new DataView(buffer);
  const text = (offset, value) => [...value].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 36 + 2 * samples.length, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true);
  view.setUint16(22, 1, true);
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, 2 * sampleRate, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  text(36, "data");
  view.setUint32(40, 2 * samples.length, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + 2 * i, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([buffer], { type: "audio/wav" });
}

async function startRecording() {
  if (!navigator.mediaDevices || !window.AudioWorkletNode) {
    setStatus("Recording needs a browser with the Web Audio API, on https or localhost.", true);
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
  } catch (error) {
    setStatus(`No microphone: ${error.message}`, true);
    setState("error");
    return;
  }
  const context = new AudioContext();
  await context.audioWorklet.addModule("/static/recorder-worklet.js");
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "pcm-recorder");
  const mute = context.createGain();
  mute.gain.value = 0;
  const chunks = [];
  node.port.onmessage = (event) => chunks.push(event.data);
  source.connect(node).connect(mute).connect(context.destination);
  const started = performance.now();
  const timer = setInterval(() => {
    const seconds = (performance.now() - started) / 1000;
    $("recording-time").textContent = `${seconds.toFixed(1)} s`;
    if (seconds >= state.maxSeconds) stopRecording();
  }, 100);
  state.recorder = { stream, context, source, node, chunks, timer };
  $("record").textContent = "Stop and analyse";
  $("record").classList.add("recording");
  setStatus("Recording… speak now.");
  setState("recording");
}

async function stopRecording() {
  const recorder = state.recorder;
  if (!recorder) return;
  state.recorder = null;
  clearInterval(recorder.timer);
  recorder.source.disconnect();
  recorder.node.port.onmessage = null;
  recorder.stream.getTracks().forEach((track) => track.stop());
  const sampleRate = recorder.context.sampleRate;
  await recorder.context.close();
  $("record").textContent = "Record from the microphone";
  $("record").classList.remove("recording");
  $("recording-time").textContent = "";
  const length = recorder.chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  const samples = new Float32Array(length);
  let offset = 0;
  for (const chunk of recorder.chunks) {
    samples.set(chunk, offset);
    offset += chunk.length;
  }
  const wav = encodeWav(samples, sampleRate);
  $("playback").src = URL.createObjectURL(wav);
  $("playback").hidden = false;
  await predict(wav, "recording.wav");
}

document.addEventListener("DOMContentLoaded", () => {
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (file) predict(file, file.name);
    $("file").value = "";
  });
  $("record").addEventListener("click", () => (state.recorder ? stopRecording() : startRecording()));
  $("start-over").addEventListener("click", startOver);
  $("explain").addEventListener("change", () => {
    const last = state.last;
    if (last) drawSpectrogram(last.spectrogram, last.segments, $("explain").checked ? last.explanation : null);
  });
  loadModel();
});
