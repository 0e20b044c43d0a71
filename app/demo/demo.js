// The demo page: pick a model, give it images, see predictions and where the model looked.
// It uses the public API only (GET /v1/models, POST /classify or /v1/models/{name}/classify).

import { drawOverlay, peakCell } from "./heatmap.js";

const KEY_STORAGE = "vitserve-api-key"; // this tab's session only
const TOP_K = 5;
const PER_MODEL_ROUTE = /^\/v1\/models\/\{[^}]+\}\/classify$/;

const byId = (id) => document.getElementById(id);
const page = {
  models: byId("model"),
  modelStatus: byId("model-status"),
  files: byId("files"),
  dropZone: byId("drop-zone"),
  overlay: byId("overlay"),
  opacity: byId("opacity"),
  opacityValue: byId("opacity-value"),
  results: byId("results"),
  resultsEmpty: byId("results-empty"),
  template: byId("result-template"),
  keyForm: byId("key-form"),
  keyInput: byId("api-key"),
  keyReason: byId("key-reason"),
};

// The per-model route's template when the server has one (from its OpenAPI), else null.
let perModelRoute = null;

class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Words for any failure: the API's own message and code, or why there was no answer. */
function describe(error) {
  if (error instanceof ApiFailure) {
    return `${error.message} (HTTP ${error.status}, ${error.code})`;
  }
  return `The server could not be reached: ${error.message}`;
}

// --- API keys: asked for on a 401, sent as a bearer token for the rest of the session -------

let keyWanted = null; // {promise, resolve} while the form waits for a key

function authorization() {
  const key = sessionStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function askForKey(reason) {
  if (keyWanted === null) {
    let resolve;
    const promise = new Promise((done) => (resolve = done));
    keyWanted = { promise, resolve };
  }
  const hadKey = sessionStorage.getItem(KEY_STORAGE) !== null;
  page.keyReason.textContent = hadKey ? `The key was refused: ${reason}` : reason;
  page.keyForm.hidden = false;
  page.keyInput.focus();
  return keyWanted.promise;
}

page.keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = page.keyInput.value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_STORAGE, key);
  page.keyInput.value = "";
  page.keyForm.hidden = true;
  const waiting = keyWanted;
  keyWanted = null;
  waiting?.resolve();
});

/** fetch + JSON, with the key; a non-2xx answer becomes an ApiFailure; a 401 asks for a key
 * and tries again with it. */
async function callApi(path, init = {}) {
  for (;;) {
    const response = await fetch(path, { ...init, headers: { ...authorization() } });
    let body = null;
    try {
      body = await response.json();
    } catch {
      // not JSON: described by the status below
    }
    if (response.ok) return { body, response };
    const error = body?.error ?? {};
    const failure = new ApiFailure(
      response.status,
      error.code ?? `http_${response.status}`,
      error.message ?? (response.statusText || "the server gave no reason"),
    );
    if (failure.status !== 401) throw failure;
    await askForKey(describe(failure));
  }
}

// --- Models ----------------------------------------------------------------------------------

/** One option per model name, whatever shape the list has (one entry per model or per
 * version). */
function modelOptions(cards) {
  const byName = new Map();
  for (const card of cards) {
    const entry = byName.get(card.name) ?? { name: card.name, versions: [], card };
    const versions = card.versions ?? (card.version !== undefined ? [card.version] : []);
    for (const version of versions) {
      const label = typeof version === "object" ? version.version : version;
      if (label !== undefined && !entry.versions.includes(String(label))) {
        entry.versions.push(String(label));
      }
    }
    byName.set(card.name, entry);
  }
  return [...byName.values()];
}

function modelSummary(option) {
  const parts = [option.name];
  if (option.versions.length) parts.push(`version ${option.versions.join(", ")}`);
  const { input_size: input, grid } = option.card;
  if (input) parts.push(`${input[1]}×${input[0]} input`);
  if (grid) parts.push(`${grid[0]}×${grid[1]} attention grid`);
  return parts.join(" · ");
}

async function findPerModelRoute() {
  try {
    const response = await fetch("openapi.json");
    if (!response.ok) return null;
    const paths = Object.keys((await response.json()).paths ?? {});
    return paths.find((path) => PER_MODEL_ROUTE.test(path)) ?? null;
  } catch {
    return null; // no OpenAPI: POST /classify, which every version of the server has
  }
}

async function loadModels() {
  perModelRoute = await findPerModelRoute();
  try {
    const { body } = await callApi("v1/models");
    const options = modelOptions(body?.models ?? []);
    page.models.replaceChildren(
      ...options.map((option) => new Option(option.name, option.name)),
    );
    const describeSelected = () => {
      const chosen = options.find((option) => option.name === page.models.value);
      page.modelStatus.textContent = chosen ? modelSummary(chosen) : "No model is served.";
    };
    page.models.addEventListener("change", describeSelected);
    describeSelected();
  } catch (error) {
    page.modelStatus.textContent = `Could not list the models: ${describe(error)}`;
  }
}

function classifyPath() {
  const name = page.models.value;
  const base =
    perModelRoute && name
      ? perModelRoute.replace(/\{[^}]+\}/, encodeURIComponent(name)).slice(1)
      : "classify";
  return `${base}?top_k=${TOP_K}&attention=grid`;
}

// --- One result per image --------------------------------------------------------------------

function milliseconds(response, header) {
  const value = Number.parseFloat(response.headers.get(header) ?? "");
  return Number.isFinite(value) ? `${value.toFixed(1)} ms` : "?";
}

function showPredictions(item, predictions) {
  const list = item.querySelector(".predictions");
  list.replaceChildren(
    ...predictions.map((prediction) => {
      const row = document.createElement("li");
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = prediction.label;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = `${(prediction.score * 100).toFixed(1)}%`;
      bar.append(fill);
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = `${(prediction.score * 100).toFixed(1)}%`;
      row.append(label, bar, score);
      return row;
    }),
  );
  list.hidden = false;
}

function showOverlay(item, image, attention) {
  const canvas = item.querySelector(".overlay");
  const caption = item.querySelector(".caption");
  if (!attention?.map || !attention?.crop) {
    // Without the crop box there is no honest place to draw the map: draw nothing.
    canvas.hidden = true;
    caption.textContent = "The server did not say which region the model saw: no overlay.";
    return;
  }
  drawOverlay(canvas, image.naturalWidth, image.naturalHeight, attention);
  const peak = peakCell(attention.map);
  const [rows, cols] = attention.grid;
  canvas.setAttribute("role", "img");
  canvas.setAttribute(
    "aria-label",
    `Attention overlay: strongest at row ${peak.row + 1}, column ${peak.col + 1} ` +
      `of the ${rows} by ${cols} patch grid`,
  );
  canvas.hidden = !page.overlay.checked;
  const [x0, y0, x1, y1] = attention.crop.map((v) => Math.round(v));
  caption.textContent =
    `Attention rollout over the region the model saw: (${x0}, ${y0}) to (${x1}, ${y1}) ` +
    `of this ${image.naturalWidth}×${image.naturalHeight} image.`;
}

/** Whether the browser can show the image (false for a file that is no image it knows). */
function loaded(image) {
  if (image.complete) return Promise.resolve(image.naturalWidth > 0);
  return new Promise((resolve) => {
    image.addEventListener("load", () => resolve(true), { once: true });
    image.addEventListener("error", () => resolve(false), { once: true });
  });
}

/** A result card for `file`, showing the image while it is classified. */
function newResult(file) {
  const item = page.template.content.firstElementChild.cloneNode(true);
  const name = file.name || "pasted image";
  item.querySelector(".result-name").textContent = name;
  const image = item.querySelector(".photo");
  image.src = URL.createObjectURL(file);
  image.alt = `Your image, ${name}`;
  return item;
}

async function classify(file, item) {
  const name = file.name || "pasted image";
  const image = item.querySelector(".photo");
  const status = item.querySelector(".status");
  const form = new FormData();
  form.append("file", file, name);
  const started = performance.now();
  try {
    const [{ body, response }, displayable] = await Promise.all([
      callApi(classifyPath(), { method: "POST", body: form }),
      loaded(image),
    ]);
    const roundTrip = performance.now() - started;
    const result = body.results[0];
    const top = result.predictions[0];
    status.textContent = `Top prediction: ${top.label}, ${(top.score * 100).toFixed(1)}%`;
    showPredictions(item, result.predictions);
    if (displayable) showOverlay(item, image, result.attention);
    const latency = item.querySelector(".latency");
    latency.textContent =
      `${body.model.name} version ${body.model.version} · ` +
      `server ${milliseconds(response, "x-total-time")} ` +
      `(queue ${milliseconds(response, "x-queue-time")}, ` +
      `inference ${milliseconds(response, "x-inference-time")}) · ` +
      `round trip ${roundTrip.toFixed(0)} ms`;
    latency.hidden = false;
  } catch (error) {
    status.hidden = true;
    const message = item.querySelector(".error-text");
    message.textContent = `Could not classify ${name}: ${describe(error)}`;
    message.hidden = false;
    if (!(await loaded(image))) {
      item.querySelector(".figure").hidden = true; // nothing a browser can show either
    }
  } finally {
    item.setAttribute("aria-busy", "false");
  }
}

function classifyAll(files) {
  if (!files.length) return;
  const items = files.map(newResult);
  page.resultsEmpty.hidden = true;
  page.results.prepend(...items); // newest first, each group in the order given
  // In parallel: the server batches concurrent requests.
  files.forEach((file, index) => classify(file, items[index]));
}

// --- Input: choose, drop, paste --------------------------------------------------------------

page.files.addEventListener("change", () => {
  classifyAll([...page.files.files]);
  page.files.value = ""; // the same file can be chosen again
});

for (const type of ["dragenter", "dragover"]) {
  page.dropZone.addEventListener(type, (event) => {
    event.preventDefault();
    page.dropZone.classList.add("dragging");
  });
}
page.dropZone.addEventListener("dragleave", () => page.dropZone.classList.remove("dragging"));
page.dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  page.dropZone.classList.remove("dragging");
  classifyAll([...event.dataTransfer.files]);
});

document.addEventListener("paste", (event) => {
  const files = [...(event.clipboardData?.files ?? [])];
  if (files.length) {
    event.preventDefault();
    classifyAll(files);
  }
});

// --- Overlay controls, for every result at once ------------------------------------------------

function applyOverlayControls() {
  const percent = Number(page.opacity.value);
  document.documentElement.style.setProperty("--overlay-opacity", String(percent / 100));
  page.opacityValue.textContent = `${percent}%`;
  for (const canvas of page.results.querySelectorAll(".overlay[aria-label]")) {
    canvas.hidden = !page.overlay.checked;
  }
}

page.overlay.addEventListener("change", applyOverlayControls);
page.opacity.addEventListener("input", applyOverlayControls);
applyOverlayControls();
loadModels();
