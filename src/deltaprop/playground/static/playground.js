// The playground page: the settings form, play / pause, the frames drawn as they come, and the
// step view. Each tab creates its own training session on the server when it loads; training
// advances only when this page asks (one frame of `steps_per_frame` SGD steps per request).

import {drawBoundary, drawChart, drawNetwork, format} from "./draw.js";
import {phases, renderPhase, renderStepHeader} from "./step.js";

const state = {session: null, playing: false, busy: false, data: null, settings: null,
               csv: "", record: null, phase: 0, generation: 0, looping: false};
const $ = (id) => document.getElementById(id);
const FRAME_PAUSE_MS = 120;  // between two frames while playing: a few frames per second

async function api(method, path, body) {
  const init = {method};
  if (body !== undefined) {
    init.headers = {"Content-Type": "application/json"};
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const payload = await response.json().catch(() => ({message: `HTTP ${response.status}`}));
  if (!response.ok) {
    throw Object.assign(new Error(payload.message || `HTTP ${response.status}`),
                        {field: payload.field, status: response.status});
  }
  return payload;
}

function showMessage(text, field = null) {
  $("message").textContent = text;
  document.body.dataset.message = text ? "shown" : "";
  document.querySelectorAll("#settings [name]").forEach((input) => {
    input.classList.toggle("invalid", input.name === field);
    input.setAttribute("aria-invalid", String(input.name === field));
  });
}

function readForm() {
  const form = {};
  document.querySelectorAll("#settings [name]").forEach((input) => {
    if (input.name !== "csv") form[input.name] = input.value;
  });
  form.csv = form.dataset === "csv" ? state.csv : "";
  return form;
}

function fillForm(options, settings) {
  const select = (name, choices) => {
    $(name).replaceChildren(...choices.map((c) => new Option(c, c)));
  };
  select("dataset", options.datasets);
  select("activation", options.activations);
  select("loss", options.losses);
  for (const [name, value] of Object.entries(settings)) {
    const input = document.querySelector(`#settings [name="${name}"]`);
    if (input && name !== "csv") input.value = Array.isArray(value) ? value.join(", ") : value;
  }
  $("csv-fields").hidden = settings.dataset !== "csv";
}

function drawScores(latest) {
  for (const name of ["train_loss", "val_loss", "train_accuracy", "val_accuracy"]) {
    const output = $(name.replace("_", "-"));
    output.textContent = format(latest[name]);
    output.dataset.value = String(latest[name]);
  }
}

function drawCharts(history, activation) {
  const series = (key, label) => ({label, points: history.map((p) => [p.step, p[key]])});
  drawChart($("loss-chart"), "loss L (whole splits)",
            [series("train_loss", "train"), series("val_loss", "validation")]);
  const layers = history[0].delta_norms.length;
  drawChart($("delta-chart"), "‖δ_l‖ of the minibatch (log scale)",
            Array.from({length: layers}, (_, k) => ({label: `δ_${k + 2}`,
              points: history.map((p) => [p.step, p.delta_norms[k]])})), {log: true});
  const hidden = history[0].mean_slopes.length;
  drawChart($("slope-chart"), `mean φ'(z_l) of the minibatch, φ = ${activation}`,
            Array.from({length: hidden}, (_, k) => ({label: `φ'_${k + 2}`,
              points: history.map((p) => [p.step, p.mean_slopes[k]])})),
            {ceiling: activation === "sigmoid" ? 0.25 : 1});
}

function draw(frame) {
  drawBoundary($("boundary"), state.data, frame.boundary);
  drawNetwork($("network"), frame, state.settings.activation);
  drawScores(frame.latest);
  drawCharts(frame.history, state.settings.activation);
  $("step-count").textContent = String(frame.step);
  $("epoch").textContent = String(frame.epoch);
  $("open-step").textContent = `open step ${frame.step}`;
  document.body.dataset.step = String(frame.step);
  if (state.record && state.record.step !== frame.step) closeStep();  // it showed an older step
  if (frame.stopped) {
    setPlaying(false);
    showMessage(frame.stopped);
  }
}

function setPlaying(playing) {
  state.playing = playing;
  $("play").textContent = playing ? "❚❚ pause" : "▶ play";
  $("open-step").disabled = playing;
  $("step-once").disabled = playing;
  document.body.dataset.state = playing ? "playing" : "paused";
  if (playing) closeStep();
}

function started(payload) {
  state.generation += 1;  // frames asked for before this restart are not drawn
  state.session = payload.session;
  document.body.dataset.session = payload.session;
  state.data = payload.data;
  state.settings = payload.settings;
  $("notes").textContent = [`${payload.data.n_train} training and ${payload.data.n_val} ` +
    `validation points (filled and ringed), standardized; axes: ${payload.data.feature_names[0]}, ` +
    `${payload.data.feature_names[1]}.`, ...payload.data.notes].join(" ");
  closeStep();
  draw(payload);
}

async function restart() {
  try {
    const form = readForm();
    const path = state.session ? `/api/sessions/${state.session}/settings` : "/api/sessions";
    started(await api("POST", path, form));
    showMessage("");
  } catch (error) {
    showMessage(state.session ? `${error.message} (still training with the previous settings)`
                              : error.message, error.field);
    if (error.status === 404) state.session = null;
  }
}

async function advance(steps) {
  if (state.busy || !state.session) return;
  state.busy = true;
  document.body.dataset.busy = "1";
  const generation = state.generation;
  try {
    const frame = await api("POST", `/api/sessions/${state.session}/advance`, steps ? {steps} : {});
    if (generation === state.generation) draw(frame);
  } catch (error) {
    setPlaying(false);
    showMessage(error.message, error.field);
  } finally {
    state.busy = false;
    document.body.dataset.busy = "";
  }
}

async function loop() {
  if (state.looping) return;  // pause and play within one pause between frames: one loop
  state.looping = true;
  try {
    while (state.playing) {
      await advance();
      await new Promise((resolve) => setTimeout(resolve, FRAME_PAUSE_MS));
    }
  } finally {
    state.looping = false;
  }
}

function closeStep() {
  $("step-view").hidden = true;
  state.record = null;
}

async function showPicture() {
  const example = $("step-example").value;
  const response = await fetch(`/api/sessions/${state.session}/step/picture?example=${example}`);
  $("step-picture").innerHTML = await response.text();  // the server's SVG (format_svg)
  $("step-picture").dataset.example = example;
}

async function openStep() {
  try {
    const record = await api("GET", `/api/sessions/${state.session}/step`);
    state.record = record;
    renderStepHeader(record);
    $("worked-example-link").href = `/sessions/${state.session}/step.html`;
    $("step-view").hidden = false;
    goToPhase(0);
    await showPicture();
    $("step-view").dataset.step = String(record.step);
  } catch (error) {
    showMessage(error.message, error.field);
  }
}

function goToPhase(index) {
  const count = phases(state.record.sizes).length;
  state.phase = Math.max(0, Math.min(count - 1, index));
  renderPhase(state.record, state.phase);
}

function wire() {
  $("settings").addEventListener("change", async (event) => {
    if (event.target.name === "dataset") {
      const noise = state.options.default_noise[event.target.value];
      if (noise !== undefined) $("noise").value = noise;
      $("csv-fields").hidden = event.target.value !== "csv";
      if (event.target.value === "csv" && !state.csv) {
        showMessage("choose a CSV file: a header row, numeric columns, a 0/1 label column", "csv");
        return;
      }
    }
    if (event.target.name === "csv") {
      const file = event.target.files[0];
      state.csv = file ? await file.text() : "";
    }
    await restart();
  });
  $("settings").addEventListener("submit", (event) => event.preventDefault());
  $("play").addEventListener("click", () => {
    setPlaying(!state.playing);
    if (state.playing) loop();
  });
  $("step-once").addEventListener("click", () => advance(1));
  $("reset").addEventListener("click", () => restart());
  $("open-step").addEventListener("click", () => openStep());
  $("step-close").addEventListener("click", () => closeStep());
  $("step-previous").addEventListener("click", () => goToPhase(state.phase - 1));
  $("step-next").addEventListener("click", () => goToPhase(state.phase + 1));
  $("phase-links").addEventListener("click", (event) => {
    if (event.target.dataset.index) goToPhase(parseInt(event.target.dataset.index, 10));
  });
  $("step-example").addEventListener("change", () => showPicture());
}

async function main() {
  state.options = await api("GET", "/api/options");
  fillForm(state.options, state.options.defaults);
  wire();
  await restart();
  setPlaying(false);
}

main().catch((error) => showMessage(`the page could not start: ${error.message}`));
