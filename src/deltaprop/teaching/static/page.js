// deltaprop's network picture, brought to life: the numbers of one state of training.
//
// The picture is svg.py's (format_svg): every number sits in a <tspan data-q=... data-layer=...
// data-i=... data-j=...>, every clause that needs a number in a <tspan data-when=...>. This
// script computes nothing of the network: every number it writes is read from the data of
// page.py (page_data), formatted the way deltaprop.teaching.arithmetic.format_number formats it;
// colours and widths follow svg.py's `strength` and `edge_width`, with their constants in the
// data. It works for any network size.
//
//   deltaprop.paintPicture(root, data, state)  fills the picture(s) under `root` for a state
//       {step, phase: "forward" | "backward" | "update", layer (2..L, null for the update),
//       example (1-based)}: a number appears only once its phase has computed it.
//   deltaprop.startPage(data)  runs backprop.html: the state is the URL fragment,
//       #step=3&phase=backward&layer=4&example=1; the buttons, the slider, the keys (← →) and
//       the phase links only change the fragment, and every change of it renders the page, so
//       any state can be opened directly. After a render, document.body.dataset.state holds the
//       fragment of what is shown.
(function () {
  "use strict";

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

  // The phases of one step: the forward pass layer 2 up to L, the backward pass L down to 2,
  // the update.
  function phases(last) {
    const list = [];
    for (let l = 2; l <= last; l++) list.push({phase: "forward", layer: l});
    for (let l = last; l >= 2; l--) list.push({phase: "backward", layer: l});
    list.push({phase: "update", layer: null});
    return list;
  }

  // What is known at this point of the step: the forward pass fills z and a layer by layer (the
  // loss once it reaches L), the backward pass δ and the gradients from layer L down, the update
  // the new W and b. The data (x, y) and the parameters before the step are always known.
  function isShown(state, quantity, layer, last) {
    const gradientKnown = state.phase === "update" ||
      (state.phase === "backward" && layer >= state.layer);
    switch (quantity) {
      case "z": case "a": return state.phase !== "forward" || layer <= state.layer;
      case "delta": case "grad_w": case "grad_b": return gradientKnown;
      case "w_after": case "b_after": return state.phase === "update";
      case "loss": return state.phase !== "forward" || state.layer === last;
      case "largest_delta": case "largest_grad": return state.phase !== "forward";
      case "checked": return state.phase === "update" ||
        (state.phase === "backward" && state.layer === 2);
      default: return true;
    }
  }

  function largest(values) {
    return values.reduce((most, value) => Math.max(most, Math.abs(value)), 0);
  }
  function shownLayers(data, state, quantity) {
    const last = data.sizes.length;
    return data.layers.filter((record) => isShown(state, quantity, record.layer, last));
  }
  // The largest |δ| and |∂L/∂W| shown (svg.py: _largest), the scales of colour and width.
  function largestDelta(data, state) {
    return largest(shownLayers(data, state, "delta")
      .flatMap((record) => record.delta[state.step][state.example - 1]));
  }
  function largestGrad(data, state) {
    return largest(shownLayers(data, state, "grad_w")
      .flatMap((record) => record.grad_W[state.step].flat()));
  }

  function valueOf(data, state, element) {
    const format = (value) => formatNumber(value, data.digits);
    const formatData = (value) => Number.isInteger(value) ? String(value) : format(value);
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
      case "z": return format(record.z[t][n][j]);
      case "a": return format(record.a[t][n][j]);
      case "delta": return format(record.delta[t][n][j]);
      case "w": return format(record.W[t][i][j]);
      case "w_after": return "→ " + format(record.W[t + 1][i][j]);
      case "grad_w": return format(record.grad_W[t][i][j]);
      case "b": return format(record.b[t][j]);
      case "b_after": return "→ " + format(record.b[t + 1][j]);
      case "grad_b": return format(record.grad_b[t][j]);
      case "loss": return format(data.losses[t]);
      case "largest_delta": return format(largestDelta(data, state));
      case "largest_grad": return format(largestGrad(data, state));
      default: return element.textContent;
    }
  }

  function paintUnits(root, data, state) {
    const style = data.style, mostDelta = largestDelta(data, state), last = data.sizes.length;
    root.querySelectorAll("g.unit").forEach((unit) => {
      const layer = parseInt(unit.dataset.layer, 10), j = parseInt(unit.dataset.j, 10) - 1;
      if (layer === 1) return;
      const record = data.layers[layer - 2], n = state.example - 1;
      const circle = unit.querySelector("circle.unit-fill"), bar = unit.querySelector("rect.bar");
      const delta = record.delta[state.step][n][j], a = record.a[state.step][n][j];
      const deltaShown = isShown(state, "delta", layer, last);
      circle.setAttribute("fill", deltaShown ? signColour(style, delta) : "#ffffff");
      circle.setAttribute("fill-opacity",
        deltaShown ? strength(style, delta, mostDelta).toFixed(3) : "1");
      const height = isShown(state, "a", layer, last) ?
        2 * style.radius * Math.min(Math.max(a, 0), 1) : 0;
      const bottom = parseFloat(circle.getAttribute("cy")) + style.radius;
      bar.setAttribute("height", height.toFixed(2));
      bar.setAttribute("y", (bottom - height).toFixed(2));
    });
  }
  function paintEdges(root, data, state) {
    const style = data.style, mostGrad = largestGrad(data, state), last = data.sizes.length;
    root.querySelectorAll("g.edge").forEach((edge) => {
      const layer = parseInt(edge.dataset.layer, 10);
      const i = parseInt(edge.dataset.i, 10) - 1, j = parseInt(edge.dataset.j, 10) - 1;
      const g = data.layers[layer - 2].grad_W[state.step][i][j];
      const line = edge.querySelector("line"), shown = isShown(state, "grad_w", layer, last);
      line.setAttribute("stroke", shown ? signColour(style, g) : style.neutral);
      line.setAttribute("stroke-width",
        (shown ? edgeWidth(style, g, mostGrad) : style.min_width).toFixed(2));
    });
  }
  const signColour = (style, v) => v > 0 ? style.positive : v < 0 ? style.negative : style.neutral;
  const strength = (style, v, most) =>
    style.min_opacity + (1 - style.min_opacity) * (most > 0 ? Math.abs(v) / most : 0);
  const edgeWidth = (style, v, most) =>
    style.min_width + (style.max_width - style.min_width) * (most > 0 ? Math.abs(v) / most : 0);

  // Shrunk to fit a narrow window, the picture keeps its text at least `smallest` px: below
  // that width it scrolls sideways instead (svg.py writes its font size in data-font).
  function keepReadable(root, smallest = 9) {
    root.querySelectorAll("svg[data-font]").forEach((picture) => {
      const width = picture.viewBox.baseVal.width, font = parseFloat(picture.dataset.font);
      picture.style.minWidth = Math.ceil(width * smallest / font) + "px";
    });
  }

  function paintPicture(root, data, state) {
    const last = data.sizes.length;
    keepReadable(root);
    root.querySelectorAll("[data-q]").forEach((element) => {
      const layer = parseInt(element.dataset.layer, 10);
      element.textContent = isShown(state, element.dataset.q, layer, last) ?
        valueOf(data, state, element) : "";
    });
    root.querySelectorAll("[data-when]").forEach((element) => {
      element.style.display = isShown(state, element.dataset.when, NaN, last) ? "" : "none";
    });
    paintUnits(root, data, state);
    paintEdges(root, data, state);
    root.querySelectorAll("rect.column").forEach((column) => {
      column.classList.toggle("current", parseInt(column.dataset.layer, 10) === state.layer);
    });
  }

  // "δ_4 = a^{l−1}_i": _x / _{..} as a subscript, ^x / ^{..} as a superscript, into `target`.
  function writeFormula(target, text) {
    target.textContent = "";
    const pattern = /([_^])(\{([^}]*)\}|([0-9A-Za-z]+))/g;
    let at = 0, match;
    while ((match = pattern.exec(text)) !== null) {
      target.append(text.slice(at, match.index));
      const script = document.createElement(match[1] === "_" ? "sub" : "sup");
      script.textContent = match[3] !== undefined ? match[3] : match[4];
      target.append(script);
      at = pattern.lastIndex;
    }
    target.append(text.slice(at));
  }

  // The equations of a phase: the code's row form (mean loss) and the textbook's column form
  // (C_x of one example, C = (1/N) Σ_x C_x their mean).
  function describe(data, state) {
    const l = state.layer, last = data.sizes.length, below = l === 2 ? "x" : "a_" + (l - 1);
    if (state.phase === "forward") {
      return ["z_" + l + " = " + below + " W_" + l + " + b_" + l + ",   a_" + l + " = σ(z_" + l + ")",
              "z^" + l + " = w^" + l + " a^" + (l - 1) + " + b^" + l + ",   a^" + l + " = σ(z^" + l + ")"];
    }
    if (state.phase === "update") {
      return ["θ ← θ − η ∂L/∂θ   (η = " + data.learning_rate + ", every W_l and b_l)",
              "w^l ← w^l − η ∂C/∂w^l,   b^l ← b^l − η ∂C/∂b^l,   ∂C/∂w^l = (1/N) Σ_x ∂C_x/∂w^l"];
    }
    const gradients = ";   ∂L/∂W_" + l + " = " + below + "ᵀ δ_" + l + ",   ∂L/∂b_" + l +
      " = Σ_{batch} δ_" + l;
    const textbook = ";   ∂C_x/∂w^" + l + "_{ji} = a^{" + (l - 1) + "}_i δ^" + l + "_j (BP4),   " +
      "∂C_x/∂b^" + l + "_j = δ^" + l + "_j (BP3)";
    if (l === last) {
      return ["δ_" + l + " = (a_" + l + " − y) / (N·n_" + l + ")" + gradients,
              "δ^" + l + " = a^" + l + " − y (BP1, σ' cancels)" + textbook];
    }
    return ["δ_" + l + " = (δ_" + (l + 1) + " W_" + (l + 1) + "ᵀ) ⊙ a_" + l + "(1 − a_" + l + ")" + gradients,
            "δ^" + l + " = ((w^" + (l + 1) + ")ᵀ δ^" + (l + 1) + ") ⊙ σ'(z^" + l + ") (BP2)" + textbook];
  }

  function status(data, state) {
    const format = (value) => formatNumber(value, data.digits), last = data.sizes.length;
    const parts = ["step " + state.step];
    if (isShown(state, "loss", null, last)) {
      parts.push("loss " + format(data.losses[state.step]) + " before the update" +
        (state.phase === "update" ? ", " + format(data.losses[state.step + 1]) + " after it" : ""));
    } else {
      parts.push("the loss is known once the forward pass reaches layer " + last);
    }
    if (isShown(state, "checked", null, last)) {
      const error = data.errors[state.step];
      parts.push("∂L/∂θ and every δ against jax.grad: relative error " +
        error.toExponential(1) + (error <= data.tolerance ? " ✓" : " ✗"));
    }
    return parts.join("; ");
  }

  function startPage(data) {
    const last = data.sizes.length, PHASES = phases(last);
    const clamp = (text, low, high, fallback) => {
      const value = parseInt(text, 10);
      return Number.isFinite(value) ? Math.min(high, Math.max(low, value)) : fallback;
    };
    function parseState(hash) {  // anything missing or wrong: the forward pass at layer 2
      const query = new URLSearchParams(hash.replace(/^#/, ""));
      const given = query.get("phase");
      const phase = ["forward", "backward", "update"].includes(given) ? given : "forward";
      const fallback = phase === "backward" ? last : 2;
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
    const indexOf = (state) =>
      PHASES.findIndex((p) => p.phase === state.phase && p.layer === state.layer);
    const atStart = (state) => state.step === 0 && indexOf(state) === 0;
    const atEnd = (state) => state.step === data.steps - 1 && indexOf(state) === PHASES.length - 1;
    function advance(state, by) {  // the next (by = 1) or previous (by = −1) phase, across steps
      if ((by > 0 && atEnd(state)) || (by < 0 && atStart(state))) return state;
      let index = indexOf(state) + by, step = state.step;
      if (index >= PHASES.length) { step += 1; index = 0; }
      if (index < 0) { step -= 1; index = PHASES.length - 1; }
      return {step: step, phase: PHASES[index].phase, layer: PHASES[index].layer,
              example: state.example};
    }

    function render() {
      const state = parseState(location.hash);
      paintPicture(document.getElementById("network"), data, state);
      document.querySelectorAll("#phases a").forEach((link) => {
        const layer = link.dataset.layer ? parseInt(link.dataset.layer, 10) : null;
        const target = {step: state.step, phase: link.dataset.phase, layer: layer,
                        example: state.example};
        link.setAttribute("href", toHash(target));
        link.classList.toggle("current", target.phase === state.phase && target.layer === state.layer);
      });
      document.querySelectorAll("line.cursor").forEach((cursor) => {
        const x = parseFloat(cursor.dataset.x0) + state.step * parseFloat(cursor.dataset.dx);
        cursor.setAttribute("x1", x.toFixed(2));
        cursor.setAttribute("x2", x.toFixed(2));
      });
      const [code, textbook] = describe(data, state);
      writeFormula(document.getElementById("equation-code"), code);
      writeFormula(document.getElementById("equation-textbook"), textbook);
      document.getElementById("phase-label").textContent = state.phase === "update" ?
        "update" : state.phase + " pass · layer " + state.layer;
      document.getElementById("step-label").textContent = String(state.step);
      document.getElementById("step").value = String(state.step);
      document.getElementById("previous").disabled = atStart(state);
      document.getElementById("next").disabled = atEnd(state);
      const example = document.getElementById("example");
      if (example) example.value = String(state.example);
      document.getElementById("status").textContent = status(data, state);
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
  }

  window.deltaprop = Object.assign(window.deltaprop || {},
    {formatNumber, phases, isShown, keepReadable, paintPicture, startPage});
  const embedded = document.getElementById("deltaprop-data");
  if (embedded) startPage(JSON.parse(embedded.textContent));
})();
