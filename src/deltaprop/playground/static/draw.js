// Drawing the frames: the decision boundary over the data, the network with its weights as
// edge widths, and line charts over the steps. Every number drawn comes from the server's JSON.

const SVG = "http://www.w3.org/2000/svg";
export const POSITIVE = "#1d6fb8", NEGATIVE = "#e07b00";  // class 1 / w > 0, class 0 / w < 0
export const SERIES = ["#1d4ed8", "#b45309", "#047857", "#7c3aed", "#be123c", "#0e7490", "#4d7c0f"];

// Four significant digits; exponent form outside [1e-3, 1e4).
export function format(value, digits = 4) {
  if (value === 0) return "0";
  const size = Math.abs(value);
  return size >= 1e-3 && size < 1e4 ? value.toPrecision(digits) : value.toExponential(digits - 1);
}

export function element(tag, attributes = {}, parent = null, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== null) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

// p = σ(z_L) from 0 (class 0, orange) through ½ (white) to 1 (class 1, blue).
function shade(p) {
  const [r0, g0, b0] = p < 0.5 ? [224, 123, 0] : [29, 111, 184];
  const t = Math.min(1, Math.abs(p - 0.5) * 2) * 0.8;
  return [255 + (r0 - 255) * t, 255 + (g0 - 255) * t, 255 + (b0 - 255) * t].map(Math.round);
}

// σ(z_L) on the GRID × GRID grid, each value at its grid point, smoothed between them.
export function drawBoundary(canvas, data, boundary) {
  const context = canvas.getContext("2d"), size = canvas.width, cells = data.grid;
  const small = new OffscreenCanvas(cells, cells), image = new ImageData(cells, cells);
  boundary.forEach((p, k) => image.data.set([...shade(p), 255], 4 * k));
  small.getContext("2d").putImageData(image, 0, 0);
  context.imageSmoothingEnabled = true;
  const half = size / (2 * (cells - 1));  // grid point k sits at k·size/(cells − 1)
  context.drawImage(small, -half, -half, size + 2 * half, size + 2 * half);
  const [x0, x1, y0, y1] = data.extent;
  const place = ([u, v]) => [(u - x0) / (x1 - x0) * size, (y1 - v) / (y1 - y0) * size];
  const points = (xs, ys, hollow) => xs.forEach((point, n) => {
    const [px, py] = place(point);
    context.beginPath();
    context.arc(px, py, 3.2, 0, 2 * Math.PI);
    context.fillStyle = ys[n] > 0.5 ? POSITIVE : NEGATIVE;
    context.strokeStyle = hollow ? "#111" : "#fff";
    context.lineWidth = hollow ? 1.2 : 0.8;
    context.fill();
    context.stroke();
  });
  points(data.x_train, data.y_train, false);
  points(data.x_val, data.y_val, true);
}

// Layers left to right; an edge's width grows with |W_l[i,j]|, its colour is the sign.
export function drawNetwork(svg, frame, activation) {
  svg.replaceChildren();
  const sizes = frame.sizes, width = 380, height = 300, top = 34;
  const radius = Math.min(11, (height - top - 24) / Math.max(...sizes) / 2.4);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const columnX = (l) => 28 + l * (width - 56) / (sizes.length - 1);
  const unitY = (l, j) => top + 14 + (j + 0.5) * (height - top - 24) / sizes[l];
  const largest = Math.max(1e-12, ...frame.weights.flatMap((W) => W.flat().map(Math.abs)));
  frame.weights.forEach((W, index) => W.forEach((row, i) => row.forEach((w, j) => {
    const line = element("line", {
      x1: columnX(index), y1: unitY(index, i), x2: columnX(index + 1), y2: unitY(index + 1, j),
      stroke: w >= 0 ? POSITIVE : NEGATIVE, "stroke-opacity": 0.8,
      "stroke-width": (0.4 + 6 * Math.abs(w) / largest).toFixed(2),
      class: "weight", "data-layer": index + 2, "data-i": i + 1, "data-j": j + 1,
    }, svg);
    element("title", {}, line, `W_${index + 2}[${i + 1},${j + 1}] = ${format(w)}`);
  })));
  sizes.forEach((n, l) => {
    const name = l === 0 ? "x" : l === sizes.length - 1 ? "σ (output)" : activation;
    element("text", {x: columnX(l), y: 14, "text-anchor": "middle", class: "layer-name"}, svg,
            `layer ${l + 1}`);
    element("text", {x: columnX(l), y: 27, "text-anchor": "middle", class: "layer-kind"}, svg, name);
    for (let j = 0; j < n; j++) {
      const bias = l === 0 ? 0 : frame.biases[l - 1][j];
      const unit = element("circle", {cx: columnX(l), cy: unitY(l, j), r: radius,
        fill: l === 0 ? "#f3f4f6" : bias >= 0 ? "#dbeafe" : "#ffedd5", stroke: "#374151"}, svg);
      element("title", {}, unit, l === 0 ? `x[${j + 1}]` : `b_${l + 1}[${j + 1}] = ${format(bias)}`);
    }
  });
}

function tick(value, log) {
  return log ? format(10 ** value, 2) : format(value, 3);
}

// series: [{label, points: [[step, value], ...]}]; log: a log10 value axis (positive values).
export function drawChart(svg, title, series, {log = false, ceiling = null} = {}) {
  svg.replaceChildren();
  const width = 360, height = 170, left = 52, right = 70, top = 24, bottom = 26;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  element("text", {x: left, y: 15, class: "chart-title"}, svg, title);
  const shown = (v) => log ? Math.log10(Math.max(v, 1e-300)) : v;
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return;
  const steps = all.map(([t]) => t), values = all.map(([, v]) => shown(v));
  if (ceiling !== null) values.push(ceiling);
  let [low, high] = [Math.min(...values), Math.max(...values)];
  if (high - low < 1e-12) { low -= 0.5; high += 0.5; }
  const [first, last] = [Math.min(...steps), Math.max(...steps, Math.min(...steps) + 1)];
  const x = (t) => left + (t - first) / (last - first) * (width - left - right);
  const y = (v) => height - bottom - (v - low) / (high - low) * (height - top - bottom);
  element("line", {x1: left, x2: left, y1: top, y2: height - bottom, class: "axis"}, svg);
  element("line", {x1: left, x2: width - right, y1: height - bottom, y2: height - bottom,
                   class: "axis"}, svg);
  element("text", {x: left - 4, y: y(high) + 4, "text-anchor": "end", class: "tick"}, svg, tick(high, log));
  element("text", {x: left - 4, y: y(low) + 4, "text-anchor": "end", class: "tick"}, svg, tick(low, log));
  element("text", {x: left, y: height - 8, class: "tick"}, svg, `step ${first}`);
  element("text", {x: width - right, y: height - 8, "text-anchor": "end", class: "tick"}, svg,
          `step ${last}`);
  if (ceiling !== null) {
    element("line", {x1: left, x2: width - right, y1: y(ceiling), y2: y(ceiling),
                     class: "ceiling"}, svg);
  }
  series.forEach((s, index) => {
    const colour = s.colour || SERIES[index % SERIES.length];
    const path = s.points.map(([t, v]) => `${x(t).toFixed(1)},${y(shown(v)).toFixed(1)}`).join(" ");
    element("polyline", {points: path, fill: "none", stroke: colour, "stroke-width": 1.8}, svg);
    element("text", {x: width - right + 8, y: top + 10 + 14 * index, fill: colour,
                     class: "series-label"}, svg, "— " + s.label);
  });
}
