// The attention overlay, drawn in the browser from the API's answer: `grid` (rows, columns),
// `map` (the rollout, maximum 1) and `crop` ([x0, y0, x1, y1], the region the model saw, in the
// pixels of the image as sent, after EXIF rotation). Pure drawing: no network, no page state.

// The server's PNG heatmap uses the same ramp (app/postprocess.py): blue, cyan, yellow, red.
const STOPS = [
  [0, 0, 128], [0, 0, 255], [0, 255, 255], [255, 255, 0], [255, 0, 0], [128, 0, 0],
];

// The overlay canvas's long side: enough for a smooth map on any screen, small enough to draw
// in a few milliseconds.
const OVERLAY_LONG_SIDE = 640;

// Outside the crop the model saw nothing: darken it this much.
const DIM_OUTSIDE = "rgba(0, 0, 0, 0.55)";

/** [0, 1] -> [r, g, b] on the ramp. */
export function colour(value) {
  const position = Math.min(1, Math.max(0, value)) * (STOPS.length - 1);
  const low = Math.min(STOPS.length - 2, Math.floor(position));
  const frac = position - low;
  return STOPS[low].map((c, i) => Math.round(c * (1 - frac) + STOPS[low + 1][i] * frac));
}

/** Bilinear upsampling of `map` (rows x cols) to height x width, with pixel centres aligned
 * and edges clamped, as Pillow's resize does: row-major Float32Array. */
export function upsample(map, rows, cols, height, width) {
  const out = new Float32Array(height * width);
  const clamp = (v, hi) => Math.min(hi, Math.max(0, v));
  for (let y = 0; y < height; y++) {
    const sy = clamp(((y + 0.5) * rows) / height - 0.5, rows - 1);
    const y0 = Math.floor(sy);
    const y1 = Math.min(y0 + 1, rows - 1);
    const fy = sy - y0;
    for (let x = 0; x < width; x++) {
      const sx = clamp(((x + 0.5) * cols) / width - 0.5, cols - 1);
      const x0 = Math.floor(sx);
      const x1 = Math.min(x0 + 1, cols - 1);
      const fx = sx - x0;
      const top = map[y0][x0] * (1 - fx) + map[y0][x1] * fx;
      const bottom = map[y1][x0] * (1 - fx) + map[y1][x1] * fx;
      out[y * width + x] = top * (1 - fy) + bottom * fy;
    }
  }
  return out;
}

/** The strongest cell of the map, for words a screen reader can say. */
export function peakCell(map) {
  let best = { row: 0, col: 0, value: -Infinity };
  map.forEach((cells, row) =>
    cells.forEach((value, col) => {
      if (value > best.value) best = { row, col, value };
    }),
  );
  return best;
}

/** Size `canvas` to the image's aspect ratio and draw the map over `crop`, dimming the rest.
 * `imageWidth` x `imageHeight` is the image as displayed (EXIF-rotated, as browsers show it). */
export function drawOverlay(canvas, imageWidth, imageHeight, attention) {
  const scale = OVERLAY_LONG_SIDE / Math.max(imageWidth, imageHeight);
  canvas.width = Math.max(1, Math.round(imageWidth * scale));
  canvas.height = Math.max(1, Math.round(imageHeight * scale));
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);

  const [x0, y0, x1, y1] = attention.crop.map((v) => v * scale);
  const left = Math.round(x0);
  const top = Math.round(y0);
  const width = Math.max(1, Math.round(x1) - left);
  const height = Math.max(1, Math.round(y1) - top);

  context.fillStyle = DIM_OUTSIDE;
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.clearRect(left, top, width, height);

  const [rows, cols] = attention.grid;
  const values = upsample(attention.map, rows, cols, height, width);
  const pixels = context.createImageData(width, height);
  for (let i = 0; i < values.length; i++) {
    const v = Math.min(1, Math.max(0, values[i]));
    const [r, g, b] = colour(v);
    pixels.data.set([r, g, b, Math.round(255 * v)], i * 4); // transparent where it is low
  }
  context.putImageData(pixels, left, top);
}
