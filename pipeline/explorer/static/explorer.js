// The explorer's page: it draws, sends the drawing's ink to the server, and shows what the
// server's numpy network answered. No network arithmetic happens here.
"use strict";

const explorer = { models: [], last: null, busy: false, dirty: false };
window.explorer = explorer;

const canvas = document.getElementById("canvas");
const pen = canvas.getContext("2d", { willReadFrequently: true });
const status = document.getElementById("status");

function setStatus(text) { status.textContent = text || ""; }

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

// ---- drawing ---------------------------------------------------------------------------
function resetPen() {
  pen.clearRect(0, 0, canvas.width, canvas.height);
  pen.lineCap = "round";
  pen.lineJoin = "round";
  pen.lineWidth = 22;
  pen.strokeStyle = "#000";
}

function at(event) {
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * canvas.width / box.width,
          (event.clientY - box.top) * canvas.height / box.height];
}

let drawing = false;
canvas.addEventListener("pointerdown", (event) => {
  drawing = true;
  canvas.setPointerCapture(event.pointerId);
  const [x, y] = at(event);
  pen.beginPath();
  pen.moveTo(x, y);
  pen.lineTo(x + 0.01, y);  // a tap leaves a dot
  pen.stroke();
  lookSoon();
});
canvas.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const [x, y] = at(event);
  pen.lineTo(x, y);
  pen.stroke();
  lookSoon();
});
for (const ending of ["pointerup", "pointercancel"]) {
  canvas.addEventListener(ending, () => { if (drawing) { drawing = false; lookSoon(); } });
}

document.getElementById("clear").addEventListener("click", () => {
  resetPen();
  explorer.last = null;
  drawInput(null);
  explorer.models.forEach((model, index) => showAnswer(index, null));
  setStatus("");
});

function inkBase64() {
  const pixels = pen.getImageData(0, 0, canvas.width, canvas.height).data;
  const ink = new Uint8Array(canvas.width * canvas.height);
  for (let i = 0; i < ink.length; i += 1) ink[i] = pixels[4 * i + 3];  // alpha: how much ink
  let text = "";
  for (let i = 0; i < ink.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, ink.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

// One request at a time; strokes made meanwhile are sent once it returns.
function lookSoon() {
  if (explorer.busy) { explorer.dirty = true; return; }
  look({ drawing: { width: canvas.width, height: canvas.height, ink: inkBase64() } });
}

async function look(body) {
  explorer.busy = true;
  try {
    const answer = await api("/api/look", body);
    explorer.last = answer;
    drawInput(answer.input);
    answer.models.forEach((modelAnswer, index) => showAnswer(index, modelAnswer));
    setStatus("");
  } catch (error) {
    setStatus(error.message);
  } finally {
    explorer.busy = false;
    if (explorer.dirty) { explorer.dirty = false; lookSoon(); }
  }
}

// ---- showing ---------------------------------------------------------------------------
function paintImage(target, pixels) {
  const context = target.getContext("2d");
  const image = context.createImageData(28, 28);
  for (let i = 0; i < 784; i += 1) {
    const level = pixels ? Math.round(255 * pixels[i]) : 0;
    image.data.set([level, level, level, 255], 4 * i);
  }
  context.putImageData(image, 0, 0);
}

function drawInput(pixels) {
  const target = document.getElementById("input");
  paintImage(target, pixels);
  target.dataset.pixels = pixels ? JSON.stringify(pixels) : "";
}

function element(tag, className, text) {
  const made = document.createElement(tag);
  if (className) made.className = className;
  if (text !== undefined) made.textContent = text;
  return made;
}

function showRun(article, model) {
  const list = article.querySelector(".run");
  const run = model.run || {};
  const rows = [["network", (model.sizes || []).join("-")]];
  if (run.id) {
    rows.push(["run", run.name || run.id], ["config", run.summary]);
    rows.push(["test accuracy", run.test_accuracy == null ? "not scored" :
      (100 * run.test_accuracy).toFixed(2) + "%"]);
  } else {
    rows.push(["run", "no MLflow run records this model"]);
  }
  for (const [term, value] of rows) {
    list.append(element("dt", "", term), element("dd", "", value));
  }
  if (run.id) {
    const where = element("dd");
    if (run.link) {
      const link = element("a", "", "open the run in the MLflow UI");
      link.href = run.link;
      link.target = "_blank";
      where.append(link);
    } else {
      where.textContent = `${run.id} (start make ui for a link)`;
    }
    list.append(element("dt", "", "MLflow"), where);
  }
}

function buildModel(model) {
  const article = document.getElementById("model-template").content.firstElementChild
    .cloneNode(true);
  article.id = `model-${model.index}`;
  article.querySelector(".asked").textContent = model.asked;
  if (model.error) {
    const error = article.querySelector(".error");
    error.hidden = false;
    error.textContent = model.error;
    article.querySelectorAll(".answer, h3, .layers, .atlas").forEach((part) => part.remove());
    return article;
  }
  showRun(article, model);
  const bars = article.querySelector(".bars");
  for (let digit = 0; digit < 10; digit += 1) {
    const item = element("li");
    item.append(element("span", "digit", String(digit)), element("span", "bar"),
      element("span", "value", ""));
    bars.append(item);
  }
  const layers = article.querySelector(".layers");
  model.sizes.slice(1, -1).forEach((units, layer) => {
    layers.append(element("div", "label", `A${layer + 1}: ${units} units`));
    const strip = element("div", "strip");
    strip.dataset.layer = String(layer + 1);
    for (let unit = 0; unit < units; unit += 1) strip.append(element("span", "cell"));
    layers.append(strip);
  });
  const image = article.querySelector(".atlas img");
  image.src = `/api/models/${model.index}/weights.png`;
  return article;
}

function showAnswer(index, answer) {
  const article = document.getElementById(`model-${index}`);
  if (!article || explorer.models[index].error) return;
  const predicted = article.querySelector(".predicted");
  predicted.textContent = answer ? String(answer.predicted) : "?";
  article.dataset.predicted = answer ? String(answer.predicted) : "";
  article.querySelectorAll(".bars li").forEach((item, digit) => {
    const p = answer ? answer.probabilities[digit] : 0;
    item.querySelector(".bar").style.width = `${Math.round(200 * p)}px`;
    item.querySelector(".value").textContent = answer ? `${(100 * p).toFixed(1)}%` : "";
    item.classList.toggle("top", Boolean(answer) && digit === answer.predicted);
  });
  article.querySelectorAll(".strip").forEach((strip, layer) => {
    const values = answer ? answer.layers[layer] : [];
    const largest = Math.max(1e-9, ...values);
    strip.querySelectorAll(".cell").forEach((cell, unit) => {
      // A unit that fires at all shows, however faintly.
      const level = answer && values[unit] > 0 ? Math.max(0.05, values[unit] / largest) : 0;
      cell.style.background = answer ? `rgba(192, 57, 43, ${level.toFixed(3)})` : "";
      cell.title = answer ? `unit ${unit}: ${values[unit]}` : "";
    });
  });
  const atlas = article.querySelector(".atlas");
  atlas.querySelectorAll(".pick").forEach((pick) => pick.remove());
  if (!answer) return;
  // Tiles are 28 px, 1 px apart, on a grid of `atlas_columns`: placed in percent of the
  // atlas, the frames stay on their tiles at any size the page gives the image.
  const model = explorer.models[index];
  const columns = model.atlas_columns;
  const rows = Math.ceil(model.sizes[1] / columns);
  const width = 29 * columns + 1;
  const height = 29 * rows + 1;
  for (const unit of answer.top_units) {
    const pick = element("div", "pick");
    pick.dataset.unit = String(unit);
    pick.style.left = `${(100 * (1 + 29 * (unit % columns))) / width}%`;
    pick.style.top = `${(100 * (1 + 29 * Math.floor(unit / columns))) / height}%`;
    pick.style.width = `${(100 * 28) / width}%`;
    pick.style.height = `${(100 * 28) / height}%`;
    atlas.append(pick);
  }
}

async function showMistakes() {
  const first = explorer.models.findIndex((model) => !model.error);
  if (first < 0) return;
  const found = await api(`/api/models/${first}/misclassified`);
  document.getElementById("mistakes-count").textContent = found.note ||
    `(${found.total} of the test set, by ${explorer.models[first].asked}; the first ${found.items.length})`;
  const list = document.getElementById("mistake-list");
  for (const item of found.items) {
    const button = element("button", "mistake");
    button.type = "button";
    button.dataset.index = String(item.index);
    const picture = element("canvas");
    picture.width = picture.height = 28;
    paintImage(picture, item.pixels);
    button.append(picture, element("span", "", `${item.label} → ${item.predicted}`));
    button.addEventListener("click", () => {
      resetPen();
      look({ test_index: item.index });
    });
    list.append(button);
  }
}

async function start() {
  resetPen();
  drawInput(null);
  const found = await api("/api/models");
  explorer.models = found.models;
  const holder = document.getElementById("models");
  for (const model of found.models) holder.append(buildModel(model));
  await showMistakes();
  document.body.dataset.ready = "true";
}

start().catch((error) => setStatus(error.message));
