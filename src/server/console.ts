// The built-in console: GET /ui, a static page (ui/index.html, console.js, console.css: no build step, no
// CDN) that polls two read-only JSON endpoints and calls POST /v1/route for its "try a prompt" form.
//
//   GET /ui                      the page (GET /ui/ redirects here)
//   GET /ui/console.js|.css|favicon.svg
//   GET /ui/api/session          open: whether the API below needs the admin key
//   GET /ui/api/summary          rate, routing share and spend per policy over a window (console-data.ts)
//   GET /ui/api/decisions?limit  the most recent records, newest first (1..200, default 50)
//
// With an admin key configured (the env var named by server.admin_key_env) the API needs
// `Authorization: Bearer <key>`; the page asks for it once and keeps it in sessionStorage. Without one, the
// console is open (local use), like the rest of the gateway's read-only endpoints.
import { createHash, timingSafeEqual } from 'node:crypto';
import { access, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { E } from '../errors.js';
import type { RuntimeRef } from '../runtime/runtime-ref.js';
import type { Telemetry } from '../telemetry/telemetry.js';
import { ConsoleData, DECISIONS_DEFAULT, DECISIONS_MAX } from './console-data.js';

export interface ConsoleOptions {
  ref: RuntimeRef;
  telemetry: Telemetry;
}

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

const FILES: Readonly<Record<string, string>> = {
  'index.html': 'text/html; charset=utf-8',
  'console.js': 'text/javascript; charset=utf-8',
  'console.css': 'text/css; charset=utf-8',
  'favicon.svg': 'image/svg+xml',
};

/** Everything the page loads comes from the gateway itself; no inline script or style, no framing. */
const CONSOLE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
  "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

/** The ui/ folder: found walking up from this module, so it works from src/ (tsx) and dist/src/ (compiled). */
async function findUiDir(): Promise<string | null> {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'ui');
    try {
      await access(join(candidate, 'index.html'));
      return candidate;
    } catch {
      const up = dirname(dir);
      if (up === dir) return null;
      dir = up;
    }
  }
}

async function loadAssets(): Promise<Map<string, Asset> | null> {
  const dir = await findUiDir();
  if (dir === null) return null;
  const assets = new Map<string, Asset>();
  await Promise.all(
    Object.entries(FILES).map(async ([name, type]) => {
      const body = await readFile(join(dir, name));
      assets.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` });
    }),
  );
  return assets;
}

/** Read once per process (every app built in it shares them): no file I/O on the request path. */
let assetsOnce: Promise<Map<string, Asset> | null> | null = null;

export async function registerConsole(app: FastifyInstance, o: ConsoleOptions): Promise<void> {
  const assets = await (assetsOnce ??= loadAssets().catch((err: unknown) => {
    app.log.warn({ err }, 'console: cannot read the ui/ folder; /ui answers 503');
    return null;
  }));
  if (assets === null) app.log.warn('console: no ui/ folder found next to the package; /ui answers 503');
  const data = new ConsoleData(o.ref, o.telemetry);

  const authorize = (req: FastifyRequest): void => {
    const key = adminKey(o.ref);
    if (key !== null && !bearerMatches(req, key)) {
      throw E.unauthorized('the console API needs `Authorization: Bearer <admin key>` (the env var named by server.admin_key_env)');
    }
  };
  const api = (reply: FastifyReply): FastifyReply => reply.headers(SECURITY_HEADERS).header('cache-control', 'no-store');

  const serve = (name: string) =>
    async function consoleAsset(req: FastifyRequest, reply: FastifyReply) {
      const a = assets?.get(name);
      reply.headers(SECURITY_HEADERS);
      if (a === undefined) {
        throw E.notReady('the console is not installed: the ui/ folder was not found next to the signalman package');
      }
      reply.header('cache-control', 'no-cache').header('etag', a.etag);
      if (req.headers['if-none-match'] === a.etag) return reply.code(304).send();
      return reply.type(a.type).send(a.body);
    };

  app.get('/ui', serve('index.html'));
  app.get('/ui/', async function consoleSlash(req, reply) {
    const q = req.url.indexOf('?');
    return reply.redirect(q < 0 ? '/ui' : `/ui${req.url.slice(q)}`, 301);
  });
  app.get('/ui/console.js', serve('console.js'));
  app.get('/ui/console.css', serve('console.css'));
  app.get('/ui/favicon.svg', serve('favicon.svg'));

  app.get('/ui/api/session', async function consoleSession(_req, reply) {
    const envName = o.ref.current?.config.server.admin_key_env ?? 'SIGNALMAN_ADMIN_KEY';
    return api(reply).send({ auth_required: adminKey(o.ref) !== null, admin_key_env: envName });
  });
  app.get('/ui/api/summary', async function consoleSummary(req, reply) {
    authorize(req);
    return api(reply).send(await data.summary());
  });
  app.get<{ Querystring: { limit?: string } }>('/ui/api/decisions', async function consoleDecisions(req, reply) {
    authorize(req);
    return api(reply).send(await data.decisions(parseLimit(req.query.limit)));
  });
}

/** `limit`: an integer from 1; larger than DECISIONS_MAX is served as DECISIONS_MAX. */
function parseLimit(raw: unknown): number {
  if (raw === undefined || raw === '') return DECISIONS_DEFAULT;
  const n = typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw E.invalidRequest(`limit must be an integer from 1 to ${DECISIONS_MAX}`, 'limit');
  return Math.min(n, DECISIONS_MAX);
}

/** The admin key, or null when none is configured (the console is then open). */
function adminKey(ref: RuntimeRef): string | null {
  const key = process.env[ref.current?.config.server.admin_key_env ?? 'SIGNALMAN_ADMIN_KEY'];
  return key === undefined || key === '' ? null : key;
}

/** `Authorization: Bearer <want>`, compared in constant time (as app.ts does for /admin). */
function bearerMatches(req: FastifyRequest, want: string): boolean {
  const auth = req.headers.authorization ?? '';
  const given = Buffer.from(auth.startsWith('Bearer ') ? auth.slice(7) : '');
  const w = Buffer.from(want);
  return given.length === w.length && timingSafeEqual(given, w);
}
