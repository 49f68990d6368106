import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as PImage from 'pureimage';

// Quality/cost curves as one PNG, drawn in pure JS (pureimage) with a font shipped in an npm package
// (dejavu-fonts-ttf), so plotting needs no native library and no download.

export interface Series {
  label: string;
  points: ReadonlyArray<{ x: number; y: number }>;
  /** 'line' joins points in x order; 'dots' marks them (e.g. single models). */
  style: 'line' | 'dots';
  dashed?: boolean;
}

export interface Panel {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];
const W = 560;
const H = 420;
const M = { left: 64, right: 16, top: 36, bottom: 52 };
const FONT = 'DejaVuSans';

let fontReady: Promise<void> | null = null;
function loadFont(): Promise<void> {
  if (fontReady === null) {
    const req = createRequire(import.meta.url);
    const file = join(dirname(req.resolve('dejavu-fonts-ttf/package.json')), 'ttf', 'DejaVuSans.ttf');
    fontReady = PImage.registerFont(file, FONT).loadPromise();
  }
  return fontReady;
}

const niceRange = (lo: number, hi: number): [number, number] => {
  if (!(hi > lo)) return [lo - 0.5, hi + 0.5];
  const pad = (hi - lo) * 0.05;
  return [lo - pad, hi + pad];
};

function drawPanel(ctx: PImage.Context, p: Panel, ox: number, oy: number): void {
  const all = p.series.flatMap((s) => s.points);
  const [x0, x1] = niceRange(Math.min(...all.map((q) => q.x)), Math.max(...all.map((q) => q.x)));
  const [y0, y1] = niceRange(Math.min(...all.map((q) => q.y)), Math.max(...all.map((q) => q.y)));
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const X = (x: number): number => ox + M.left + ((x - x0) / (x1 - x0)) * pw;
  const Y = (y: number): number => oy + M.top + (1 - (y - y0) / (y1 - y0)) * ph;
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(ox, oy, W, H);
  ctx.strokeStyle = '#888888';
  ctx.lineWidth = 1;
  ctx.strokeRect(ox + M.left, oy + M.top, pw, ph);
  ctx.fillStyle = '#000000';
  ctx.font = `15pt ${FONT}`;
  ctx.fillText(p.title, ox + M.left, oy + 22);
  ctx.font = `11pt ${FONT}`;
  for (let i = 0; i <= 4; i++) {
    const xv = x0 + ((x1 - x0) * i) / 4;
    const yv = y0 + ((y1 - y0) * i) / 4;
    ctx.fillText(xv.toFixed(2), X(xv) - 14, oy + M.top + ph + 16);
    ctx.fillText(yv.toFixed(2), ox + 8, Y(yv) + 4);
  }
  ctx.fillText(p.xLabel, ox + M.left + pw / 2 - 40, oy + H - 12);
  ctx.fillText(p.yLabel, ox + 8, oy + M.top - 6);
  p.series.forEach((s, k) => {
    const color = COLORS[k % COLORS.length]!;
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = 2;
    const pts = [...s.points].sort((a, b) => a.x - b.x);
    if (s.style === 'line' && pts.length > 1) {
      // pureimage has no dashes: a dashed series is drawn as short strokes between interpolated points.
      for (let i = 1; i < pts.length; i++) {
        const a = pts[i - 1]!;
        const b = pts[i]!;
        const steps = s.dashed ? 12 : 1;
        for (let j = 0; j < steps; j += s.dashed ? 2 : 1) {
          const t0 = j / steps;
          const t1 = (j + 1) / steps;
          const [ax, ay] = [X(a.x + (b.x - a.x) * t0), Y(a.y + (b.y - a.y) * t0)];
          const [bx, by] = [X(a.x + (b.x - a.x) * t1), Y(a.y + (b.y - a.y) * t1)];
          // pureimage logs a warning for zero-length strokes (repeated curve points): skip them.
          if (Math.abs(ax - bx) + Math.abs(ay - by) < 0.5) continue;
          ctx.beginPath();
          ctx.moveTo(ax, ay);
          ctx.lineTo(bx, by);
          ctx.stroke();
        }
      }
    } else {
      for (const q of pts) ctx.fillRect(X(q.x) - 3, Y(q.y) - 3, 6, 6);
    }
    // Legend, bottom right inside the plot.
    const ly = oy + M.top + ph - 14 - (p.series.length - 1 - k) * 16;
    ctx.fillRect(ox + M.left + pw - 200, ly - 5, 14, 4);
    ctx.fillStyle = '#000000';
    ctx.font = `10pt ${FONT}`;
    ctx.fillText(s.label.slice(0, 30), ox + M.left + pw - 180, ly);
  });
}

/** Draws the panels in a grid (two per row) and writes a PNG. */
export async function writeCurvesPng(file: string, panels: readonly Panel[]): Promise<void> {
  if (panels.length === 0) throw new Error('writeCurvesPng: nothing to draw');
  await loadFont();
  const cols = Math.min(2, panels.length);
  const rows = Math.ceil(panels.length / cols);
  const img = PImage.make(W * cols, H * rows);
  const ctx = img.getContext('2d');
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, W * cols, H * rows);
  panels.forEach((p, i) => drawPanel(ctx, p, (i % cols) * W, Math.floor(i / cols) * H));
  await mkdir(dirname(file), { recursive: true });
  await PImage.encodePNGToStream(img, createWriteStream(file));
}
