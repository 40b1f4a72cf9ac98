// The step view: forward, backward and update of the current minibatch, every number in tables,
// phase by phase, with the check against jax.grad; and the worked example's network picture of
// one example of the minibatch (deltaprop.teaching.svg, drawn by the server).

import {format} from "./draw.js";

const PHI = {
  sigmoid: {a: "σ(z_l)", derivative: "a_l(1 − a_l)"},
  tanh: {a: "tanh(z_l)", derivative: "1 − a_l²"},
  relu: {a: "max(z_l, 0)", derivative: "1[z_l > 0]"},
};

export function phases(sizes) {
  const last = sizes.length, list = [];
  for (let l = 2; l <= last; l++) list.push({phase: "forward", layer: l});
  for (let l = last; l >= 2; l--) list.push({phase: "backward", layer: l});
  list.push({phase: "update", layer: null});
  return list;
}

const sub = (name, l) => name.replace(/_l/g, "_" + l).replace(/l\+1/g, String(l + 1));

function equations(record, phase, l) {
  const last = record.sizes.length, below = l === 2 ? "x" : `a_${l - 1}`;
  if (phase === "update") {
    return [`θ ← θ − η ∂L/∂θ    (η = ${record.learning_rate}, every W_l and b_l)`,
            `loss of the minibatch: ${format(record.loss_before, 6)} before, ` +
            `${format(record.loss_after, 6)} after`];
  }
  if (phase === "forward") {
    const a = l === last ? `σ(z_${l})    (the output is a sigmoid)` : sub(PHI[record.activation].a, l);
    return [`z_${l} = ${below} W_${l} + b_${l}`, `a_${l} = ${a}`];
  }
  const gradients = `∂L/∂W_${l} = ${below}ᵀ δ_${l}    ∂L/∂b_${l} = Σ_batch δ_${l}`;
  if (l === last) {
    const count = record.x.length * record.sizes[last - 1];
    const rule = record.loss === "bce"
      ? `δ_${l} = (a_${l} − y) / (N·n_${l}) = (a_${l} − y) / ${count}    (bce: σ' cancels)`
      : `δ_${l} = (a_${l} − y) ⊙ σ'(z_${l}) / (N·n_${l}),  σ'(z_${l}) = a_${l}(1 − a_${l}),  N·n_${l} = ${count}    (mse)`;
    return [rule, gradients];
  }
  return [`δ_${l} = (δ_${l + 1} W_${l + 1}ᵀ) ⊙ φ'(z_${l}),   φ'(z_${l}) = ${sub(PHI[record.activation].derivative, l)}`,
          gradients];
}

// A table of blocks side by side sharing their rows: [title, quantity, matrix (rows × columns)].
function table(caption, rowHeader, rowLabels, blocks, layer) {
  const element = document.createElement("table");
  element.className = "numbers";
  const head = element.createTHead(), titles = head.insertRow(), indices = head.insertRow();
  titles.insertCell().textContent = "";
  indices.insertCell().textContent = rowHeader;
  for (const [title, , matrix] of blocks) {  // [title, quantity, matrix, layer (optional)]
    const cell = titles.insertCell();
    cell.textContent = title;
    cell.colSpan = matrix[0].length;
    matrix[0].forEach((_, j) => { indices.insertCell().textContent = String(j + 1); });
  }
  const body = element.createTBody();
  rowLabels.forEach((label, r) => {
    const row = body.insertRow();
    row.insertCell().textContent = label;
    for (const [, quantity, matrix, own] of blocks) {
      matrix[r].forEach((value, j) => {
        const cell = row.insertCell();
        cell.textContent = quantity === "y" ? String(value) : format(value);  // labels: 0, 1
        cell.title = String(value);  // the float64 value, unrounded
        const isBias = rowHeader === "i" && label === "b";
        Object.assign(cell.dataset, {q: isBias ? quantity.replace("W", "b") : quantity,
                                     layer: String(own || layer), j: String(j + 1),
                                     value: String(value)});
        cell.dataset[rowHeader === "i" ? "i" : "n"] = isBias ? "" : label;
      });
    }
  });
  const captionElement = element.createCaption();
  captionElement.textContent = caption;
  return element;
}

const withBias = (W, b) => [...W, b];
const examples = (record) => record.x.map((_, n) => String(n + 1));
const unitsBelow = (W) => [...W.map((_, i) => String(i + 1)), "b"];
const difference = (a, y) => a.map((row, n) => row.map((v, j) => v - y[n][j]));

function forwardTables(record, layer) {
  const r = record.layers[layer - 2], below = layer === 2 ? ["x = a_1", "x", record.x, 1]
    : [`a_${layer - 1}`, "a", record.layers[layer - 3].a, layer - 1];
  return [
    table(`W_${layer} and b_${layer} (last row)`, "i", unitsBelow(r.W),
          [[`W_${layer}; b_${layer}`, "W", withBias(r.W, r.b)]], layer),
    table("one row per example of the minibatch", "n", examples(record),
          [below, [`z_${layer}`, "z", r.z], [`a_${layer}`, "a", r.a]], layer),
  ];
}

function backwardTables(record, layer) {
  const r = record.layers[layer - 2], last = record.sizes.length;
  let blocks;
  if (layer === last) {
    blocks = [["y", "y", record.y], [`a_${layer} − y`, "error", difference(r.a, record.y)]];
    if (record.loss === "mse") blocks.push([`σ'(z_${layer})`, "derivative", r.derivative]);
  } else {
    blocks = [[`δ_${layer + 1} W_${layer + 1}ᵀ`, "backpropagated", r.backpropagated],
              [`φ'(z_${layer})`, "derivative", r.derivative]];
  }
  blocks.push([`δ_${layer}`, "delta", r.delta]);
  return [
    table("one row per example of the minibatch", "n", examples(record), blocks, layer),
    table(`∂L/∂W_${layer} and ∂L/∂b_${layer} (last row)`, "i", unitsBelow(r.W),
          [[`∂L/∂W_${layer}; ∂L/∂b_${layer}`, "grad_W", withBias(r.grad_W, r.grad_b)]], layer),
  ];
}

function updateTables(record) {
  return record.layers.map((r) => table(`layer ${r.layer}: W_${r.layer} ← W_${r.layer} − η ∂L/∂W_${r.layer}`,
    "i", unitsBelow(r.W), [[`W_${r.layer}; b_${r.layer}`, "W", withBias(r.W, r.b)],
                           ["after the update", "new_W", withBias(r.new_W, r.new_b)]], r.layer));
}

function checkLine(record, layer) {
  const e = record.layers[layer - 2].errors;
  const passed = Math.max(e.delta, e.W, e.b) <= record.tolerance;
  return `against jax.grad (float64, relative error): δ_${layer} ${e.delta.toExponential(1)}, ` +
    `∂L/∂W_${layer} ${e.W.toExponential(1)}, ∂L/∂b_${layer} ${e.b.toExponential(1)} ` +
    (passed ? "✓" : "✗ (over the tolerance " + record.tolerance.toExponential(0) + ")");
}

export function renderPhase(record, index) {
  const list = phases(record.sizes), {phase, layer} = list[index];
  document.getElementById("phase-name").textContent =
    phase === "update" ? "update" : `${phase} pass · layer ${layer}`;
  document.querySelectorAll("#phase-links button").forEach((button, k) => {
    button.classList.toggle("current", k === index);
  });
  document.getElementById("step-previous").disabled = index === 0;
  document.getElementById("step-next").disabled = index === list.length - 1;
  document.getElementById("step-equations").textContent = equations(record, phase, layer).join("\n");
  const tables = phase === "forward" ? forwardTables(record, layer)
    : phase === "backward" ? backwardTables(record, layer) : updateTables(record);
  document.getElementById("step-tables").replaceChildren(...tables);
  document.getElementById("step-check").textContent = phase === "backward" ? checkLine(record, layer)
    : phase === "update" ? `every layer against jax.grad: largest relative error ` +
      `${record.largest_error.toExponential(1)} ${record.passed ? "✓" : "✗"}` : "";
  document.getElementById("step-view").dataset.phase = phase + (layer ? "-" + layer : "");
}

export function renderStepHeader(record) {
  const rows = record.indices.length;
  document.getElementById("step-summary").textContent =
    `Step ${record.step}: θ_${record.step} → θ_${record.step + 1} on a minibatch of ${rows} ` +
    `example${rows === 1 ? "" : "s"} (rows ${record.indices.slice(0, 12).map((i) => i + 1).join(", ")}` +
    `${rows > 12 ? ", …" : ""} of the standardized training split), hidden φ = ${record.activation}, ` +
    `cost ${record.loss}, η = ${record.learning_rate}. Every number is deltaprop.backprop_trace's ` +
    `(float64, jitted), rounded to 4 significant digits (hover a number for its unrounded ` +
    `value); δ_l and ∂L/∂θ are checked against jax.grad.`;
  const links = document.getElementById("phase-links");
  links.replaceChildren(...phases(record.sizes).map(({phase, layer}, k) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = phase === "update" ? "update" : `${phase} · ${layer}`;
    button.dataset.index = String(k);
    return button;
  }));
  const select = document.getElementById("step-example");
  select.replaceChildren(...record.x.map((_, n) => new Option(String(n + 1), String(n + 1))));
  const page = document.getElementById("worked-example-link");
  page.hidden = !record.worked_example_page;
  document.getElementById("picture-note").textContent = record.activation === "sigmoid" ? "" :
    `The picture is the worked example's, written for sigmoid units: here the hidden units ` +
    `compute a = ${PHI[record.activation].a.replace(/_l/g, "")} (its bar is clipped to 0..1).`;
}
