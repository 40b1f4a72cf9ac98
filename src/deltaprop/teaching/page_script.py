"""The page's script: it reads the embedded JSON and rewrites the numbers of the network picture.

Kept as one JavaScript string so that the page stays a single self-contained file. It computes
nothing of the network: every number it writes is read from the JSON (page.py), formatted the way
`deltaprop.teaching.arithmetic.format_number` formats it; colours and widths follow the formulas
of svg.py (`strength`, `edge_width`), with their constants passed in the JSON.

The state is the URL fragment, `#step=3&phase=backward&layer=4&example=1`: the buttons, the
slider, the keys (← →) and the phase links only change the fragment, and every change of the
fragment renders the page again, so any state can be loaded directly. After a render,
`document.body.dataset.state` holds the fragment of what is shown.
"""

SCRIPT = r"""
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("deltaprop-data").textContent);
  const style = data.style, last = data.sizes.length;
  const PHASES = [];
  for (let l = 2; l <= last; l++) PHASES.push({phase: "forward", layer: l});
  for (let l = last; l >= 2; l--) PHASES.push({phase: "backward", layer: l});
  PHASES.push({phase: "update", layer: null});

  // Python's f"{value:#.{digits}g}": digits significant digits, trailing zeros and the point kept.
  function formatNumber(value, digits) {
    if (value === 0) value = 0;  // −0 is written as 0
    let [mantissa, exponentText] = value.toExponential(digits - 1).split("e");
    const exponent = parseInt(exponentText, 10);
    if (exponent < -4 || exponent >= digits) {
      if (!mantissa.includes(".")) mantissa += ".";
      const sign = exponent < 0 ? "-" : "+";
      return mantissa + "e" + sign + String(Math.abs(exponent)).padStart(2, "0");
    }
    const fixed = value.toFixed(digits - 1 - exponent);
    return fixed.includes(".") ? fixed : fixed + ".";
  }
  const formatData = (value) =>
    Number.isInteger(value) ? String(value) : formatNumber(value, data.digits);
  const format = (value) => formatNumber(value, data.digits);

  function clamp(text, low, high, fallback) {
    const value = parseInt(text, 10);
    return Number.isFinite(value) ? Math.min(high, Math.max(low, value)) : fallback;
  }
  function parseState(hash) {
    const query = new URLSearchParams(hash.replace(/^#/, ""));
    const given = query.get("phase");
    const phase = ["forward", "backward", "update"].includes(given) ? given : "backward";
    const fallback = given === null ? 2 : phase === "forward" ? 2 : last;
    return {
      step: clamp(query.get("step"), 0, data.steps - 1, 0),
      phase: phase,
      layer: phase === "update" ? null : clamp(query.get("layer"), 2, last, fallback),
      example: clamp(query.get("example"), 1, data.n_examples, 1),
    };
  }
  function toHash(state) {
    let hash = "#step=" + state.step + "&phase=" + state.phase;
    if (state.layer !== null) hash += "&layer=" + state.layer;
    if (data.n_examples > 1) hash += "&example=" + state.example;
    return hash;
  }
  function advance(state, by) {  // the next (by = 1) or previous (by = −1) phase, across steps
    let index = PHASES.findIndex((p) => p.phase === state.phase && p.layer === state.layer) + by;
    let step = state.step;
    if (index >= PHASES.length) {
      if (step + 1 < data.steps) { step += 1; index = 0; } else { index = PHASES.length - 1; }
    } else if (index < 0) {
      if (step > 0) { step -= 1; index = PHASES.length - 1; } else { index = 0; }
    }
    return {step: step, phase: PHASES[index].phase, layer: PHASES[index].layer,
            example: state.example};
  }

  // What is known at this point of the update: the forward pass fills a layer by layer, the
  // backward pass δ and the gradients from the output layer down, the update the new W and b.
  function isShown(state, quantity, layer) {
    const gradientKnown = state.phase === "update" ||
      (state.phase === "backward" && layer >= state.layer);
    switch (quantity) {
      case "a": return state.phase !== "forward" || layer <= state.layer;
      case "delta": case "grad_w": case "grad_b": return gradientKnown;
      case "w_after": case "b_after": return state.phase === "update";
      case "loss": return state.phase !== "forward" || state.layer === last;
      case "largest_delta": case "largest_grad": return state.phase !== "forward";
      default: return true;
    }
  }
  function largest(values) {
    return values.reduce((most, value) => Math.max(most, Math.abs(value)), 0);
  }
  function largestDelta(state) {  // over every layer, this step and example (svg.py: _largest)
    return largest(data.layers.flatMap((r) => r.delta[state.step][state.example - 1]));
  }
  function largestGrad(state) {
    return largest(data.layers.flatMap((r) => r.grad_W[state.step].flat()));
  }
  function valueOf(state, element) {
    const q = element.dataset.q, layer = parseInt(element.dataset.layer, 10);
    const i = parseInt(element.dataset.i, 10) - 1, j = parseInt(element.dataset.j, 10) - 1;
    const n = state.example - 1, t = state.step, record = data.layers[layer - 2];
    switch (q) {
      case "x": return formatData(data.x[n][j]);
      case "y": return formatData(data.y[n][j]);
      case "inputs": return data.x[n].map(formatData).join(", ");
      case "targets": {
        const text = data.y[n].map(formatData).join(", ");
        return data.y[n].length === 1 ? text : "(" + text + ")";
      }
      case "example": return String(state.example);
      case "a": return format(record.a[t][n][j]);
      case "delta": return format(record.delta[t][n][j]);
      case "w": return format(record.W[t][i][j]);
      case "w_after": return " → " + format(record.W[t + 1][i][j]);
      case "grad_w": return format(record.grad_W[t][i][j]);
      case "b": return format(record.b[t][j]);
      case "b_after": return " → " + format(record.b[t + 1][j]);
      case "grad_b": return format(record.grad_b[t][j]);
      case "loss": return format(data.losses[t]);
      case "largest_delta": return format(largestDelta(state));
      case "largest_grad": return format(largestGrad(state));
      default: return element.textContent;
    }
  }

  const signColour = (v) => v > 0 ? style.positive : v < 0 ? style.negative : style.neutral;
  const strength = (v, most) =>
    style.min_opacity + (1 - style.min_opacity) * (most > 0 ? Math.abs(v) / most : 0);
  const edgeWidth = (v, most) =>
    style.min_width + (style.max_width - style.min_width) * (most > 0 ? Math.abs(v) / most : 0);

  function paintUnits(state) {
    const mostDelta = largestDelta(state);
    document.querySelectorAll("g.unit").forEach((unit) => {
      const layer = parseInt(unit.dataset.layer, 10), j = parseInt(unit.dataset.j, 10) - 1;
      if (layer === 1) return;
      const record = data.layers[layer - 2], n = state.example - 1;
      const circle = unit.querySelector("circle"), bar = unit.querySelector("rect.bar");
      const delta = record.delta[state.step][n][j], a = record.a[state.step][n][j];
      const deltaShown = isShown(state, "delta", layer);
      circle.setAttribute("fill", deltaShown ? signColour(delta) : "#ffffff");
      circle.setAttribute("fill-opacity", deltaShown ? strength(delta, mostDelta).toFixed(3) : "1");
      const height = isShown(state, "a", layer) ? 2 * style.radius * Math.min(Math.max(a, 0), 1) : 0;
      const bottom = parseFloat(circle.getAttribute("cy")) + style.radius;
      bar.setAttribute("height", height.toFixed(2));
      bar.setAttribute("y", (bottom - height).toFixed(2));
    });
  }
  function paintEdges(state) {
    const mostGrad = largestGrad(state);
    document.querySelectorAll("g.edge").forEach((edge) => {
      const layer = parseInt(edge.dataset.layer, 10);
      const i = parseInt(edge.dataset.i, 10) - 1, j = parseInt(edge.dataset.j, 10) - 1;
      const g = data.layers[layer - 2].grad_W[state.step][i][j];
      const line = edge.querySelector("line"), shown = isShown(state, "grad_w", layer);
      line.setAttribute("stroke", shown ? signColour(g) : style.neutral);
      line.setAttribute("stroke-width", (shown ? edgeWidth(g, mostGrad) : style.min_width).toFixed(2));
    });
  }
  function describe(state) {
    const l = state.layer, below = l === 2 ? "x" : "a_" + (l - 1);
    if (state.phase === "forward") {
      return ["z_" + l + " = " + below + " W_" + l + " + b_" + l + ",   a_" + l + " = σ(z_" + l + ")",
              "z^" + l + " = w^" + l + " a^" + (l - 1) + " + b^" + l + ",   a^" + l + " = σ(z^" + l + ")"];
    }
    if (state.phase === "update") {
      return ["θ ← θ − η ∂L/∂θ   (η = " + data.learning_rate + ", every W_l and b_l)",
              "w^l ← w^l − η ∂C/∂w^l,   b^l ← b^l − η ∂C/∂b^l"];
    }
    const gradients = ";   ∂L/∂W_" + l + " = " + below + "ᵀ δ_" + l + ",   ∂L/∂b_" + l + " = Σ_batch δ_" + l;
    const textbookGradients = ";   ∂C/∂w^" + l + "_ji = a^" + (l - 1) + "_i δ^" + l + "_j (BP4),   ∂C/∂b^" + l + "_j = δ^" + l + "_j (BP3)";
    if (l === last) {
      return ["δ_" + l + " = (a_" + l + " − y) / (N·n_" + l + ")" + gradients,
              "δ^" + l + " = a^" + l + " − y (BP1, σ' cancels)" + textbookGradients];
    }
    return ["δ_" + l + " = (δ_" + (l + 1) + " W_" + (l + 1) + "ᵀ) ⊙ a_" + l + "(1 − a_" + l + ")" + gradients,
            "δ^" + l + " = ((w^" + (l + 1) + ")ᵀ δ^" + (l + 1) + ") ⊙ σ'(z^" + l + ") (BP2)" + textbookGradients];
  }
  function phaseName(state) {
    if (state.phase === "update") return "update";
    return state.phase + " pass · layer " + state.layer;
  }

  function render() {
    const state = parseState(location.hash);
    document.querySelectorAll("[data-q]").forEach((element) => {
      const layer = parseInt(element.dataset.layer, 10);
      element.textContent = isShown(state, element.dataset.q, layer) ? valueOf(state, element) : "";
    });
    paintUnits(state);
    paintEdges(state);
    document.querySelectorAll("rect.column").forEach((column) => {
      column.classList.toggle("current", parseInt(column.dataset.layer, 10) === state.layer);
    });
    document.querySelectorAll("#phases a").forEach((link) => {
      const layer = link.dataset.layer ? parseInt(link.dataset.layer, 10) : null;
      const target = {step: state.step, phase: link.dataset.phase, layer: layer, example: state.example};
      link.setAttribute("href", toHash(target));
      link.classList.toggle("current", target.phase === state.phase && target.layer === state.layer);
    });
    document.querySelectorAll("line.cursor").forEach((cursor) => {
      const x = parseFloat(cursor.dataset.x0) + state.step * parseFloat(cursor.dataset.dx);
      cursor.setAttribute("x1", x.toFixed(2));
      cursor.setAttribute("x2", x.toFixed(2));
    });
    const [code, textbook] = describe(state);
    document.getElementById("equation-code").textContent = code;
    document.getElementById("equation-textbook").textContent = textbook;
    document.getElementById("phase-label").textContent = phaseName(state);
    document.getElementById("step-label").textContent = String(state.step);
    document.getElementById("step").value = String(state.step);
    const example = document.getElementById("example");
    if (example) example.value = String(state.example);
    document.getElementById("status").textContent =
      "step " + state.step + ": loss " + format(data.losses[state.step]) + " before the update, " +
      format(data.losses[state.step + 1]) + " after; ∂L/∂θ and δ against jax.grad: relative error " +
      data.errors[state.step].toExponential(1) + (data.errors[state.step] <= data.tolerance ? " ✓" : " ✗");
    document.body.dataset.state = toHash(state);
  }

  const go = (state) => { location.hash = toHash(state); };
  const current = () => parseState(location.hash);
  document.getElementById("next").addEventListener("click", () => go(advance(current(), 1)));
  document.getElementById("previous").addEventListener("click", () => go(advance(current(), -1)));
  document.getElementById("step").addEventListener("input", (event) =>
    go(Object.assign(current(), {step: parseInt(event.target.value, 10)})));
  const example = document.getElementById("example");
  if (example) example.addEventListener("change", (event) =>
    go(Object.assign(current(), {example: parseInt(event.target.value, 10)})));
  document.addEventListener("keydown", (event) => {
    if (event.target.tagName === "INPUT" || event.target.tagName === "SELECT") return;
    if (event.key === "ArrowRight") go(advance(current(), 1));
    if (event.key === "ArrowLeft") go(advance(current(), -1));
  });
  window.addEventListener("hashchange", render);
  render();
})();
"""
