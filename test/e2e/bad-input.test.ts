// Hostile or careless input at the front door, through real sockets: nesting that would blow the stack,
// bodies far over the limit (the client must read the 413, not a connection reset), message and character
// limits, and a bug in a handler (500 with no exception text; the stack in the log, by request id).
import { createServer, request, type Server } from 'node:http';
import pino from 'pino';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFrontDoor } from '../../src/server/front-door.js';
import type { RuntimeRef } from '../../src/runtime/runtime-ref.js';
import type { Runtime } from '../../src/runtime/compile.js';
import { startStack, twoBackends, type Stack } from '../helpers/stack.js';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({
    config: (url) => twoBackends(url).replace('server: {', 'server: { body_limit_bytes: 1048576, max_messages: 8, max_prompt_chars: 5000,'),
  });
});
afterAll(() => stack.close());

const nested = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);
const chat = (extra: string) => `{"model":"auto","messages":[{"role":"user","content":"hi"}],"extra":${extra}}`;
const post = (body: string | Buffer) =>
  fetch(`${stack.gw.url}/v1/chat/completions`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
const errorOf = async (r: Response) => ((await r.json()) as { error: { code: string; message: string; param: string | null } }).error;

describe('nesting depth', () => {
  it('a field nested 20,000 deep is a 400 naming the limit, never a 500', async () => {
    const r = await post(chat(nested(20_000)));
    expect(r.status).toBe(400);
    const e = await errorOf(r);
    expect(e.code).toBe('invalid_json');
    expect(e.message).toContain('server.max_json_depth = 128');
  });

  it('brackets inside strings do not count; nesting within the limit is forwarded as sent', async () => {
    const r = await post(chat(`{"s":"${'['.repeat(500)}\\"${'{'.repeat(500)}","deep":${nested(100)}}`));
    expect(r.status).toBe(200);
    const sent = stack.mock.requests().at(-1)?.body as { extra: { s: string } };
    expect(sent.extra.s).toBe(`${'['.repeat(500)}"${'{'.repeat(500)}`);
  });
});

describe('message and character limits', () => {
  it('more messages than server.max_messages: 400 with param messages', async () => {
    const messages = Array.from({ length: 9 }, () => ({ role: 'user', content: 'x' }));
    const r = await post(JSON.stringify({ model: 'auto', messages }));
    expect(r.status).toBe(400);
    const e = await errorOf(r);
    expect(e.param).toBe('messages');
    expect(e.message).toContain('server.max_messages = 8');
  });

  it('more text than server.max_prompt_chars (across messages) is refused before any upstream call', async () => {
    const before = stack.mock.requests().length;
    const messages = [3000, 3000].map((n) => ({ role: 'user', content: 'y'.repeat(n) }));
    const r = await post(JSON.stringify({ model: 'auto', messages }));
    expect(r.status).toBe(400);
    expect((await errorOf(r)).message).toContain('6000 characters');
    expect(stack.mock.requests().length).toBe(before);
  });
});

describe('bodies over the limit', () => {
  // 25 MB against a 1 MiB limit: the gateway drains what the client sends before it answers and closes,
  // so the client always reads the 413. Closing on unread bytes would make the kernel reset the connection.
  const big = Buffer.alloc(25 * 1024 * 1024, 0x61);

  /** The answer, once the client has both sent its whole body and read the response; any socket error rejects. */
  const send = (chunked: boolean) =>
    new Promise<{ status: number; code: string }>((resolve, reject) => {
      const u = new URL(`${stack.gw.url}/v1/chat/completions`);
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (!chunked) headers['content-length'] = String(big.length);
      let answer: { status: number; code: string } | null = null;
      let sent = false;
      const settle = () => {
        if (answer !== null && sent) resolve(answer);
      };
      const req = request({ host: u.hostname, port: u.port, method: 'POST', path: u.pathname, headers }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => {
          answer = { status: res.statusCode ?? 0, code: (JSON.parse(text) as { error: { code: string } }).error.code };
          settle();
        });
        res.on('error', reject);
      });
      // A reset while the client is still uploading (EPIPE / ECONNRESET) is what clients report as a failure.
      req.on('error', reject);
      req.on('finish', () => {
        sent = true;
        settle();
      });
      // Written in pieces, as a real upload arrives.
      let at = 0;
      const pump = () => {
        while (at < big.length) {
          const piece = big.subarray(at, at + 256 * 1024);
          at += piece.length;
          if (!req.write(piece)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });

  it('with content-length: the client reads 413 every time (10 of 10)', async () => {
    for (let i = 0; i < 10; i++) expect(await send(false)).toEqual({ status: 413, code: 'body_too_large' });
  }, 60_000);

  it('chunked: the client reads 413 every time (10 of 10)', async () => {
    for (let i = 0; i < 10; i++) expect(await send(true)).toEqual({ status: 413, code: 'body_too_large' });
  }, 60_000);
});

describe('a bug in a handler', () => {
  let server: Server;
  let url: string;
  const logged: string[] = [];
  beforeAll(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        logged.push(chunk.toString());
        cb();
      },
    });
    const logger = pino({ level: 'error' }, sink);
    const runtime = { keys: { open: true } } as unknown as Runtime; // no client keys: the API is open
    const ref = { pin: () => ({ runtime, release: () => undefined }) } as unknown as RuntimeRef;
    const door = createFrontDoor(
      {
        ref,
        routes: {
          '/v1/chat/completions': () => Promise.reject(new RangeError('Maximum call stack size exceeded in secretInternalFn')),
        },
        nextId: () => 'req-1',
        bodyLimit: () => 1024,
        maxJsonDepth: () => 128,
        isDraining: () => false,
        onBug: (err, reqId) => logger.error({ err, reqId }, 'internal error'),
      },
      (_req, res) => res.writeHead(404).end(),
    );
    server = createServer(door);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('answers 500 "internal error" with the request id and no exception text; the log has the stack', async () => {
    const r = await fetch(`${url}/v1/chat/completions`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    expect(r.status).toBe(500);
    expect(r.headers.get('x-signalman-request-id')).toBe('req-1');
    const text = await r.text();
    expect(text).toContain('internal error');
    expect(text).not.toContain('secretInternalFn');
    expect(text).not.toContain('Maximum call stack');
    const line = JSON.parse(logged.join('')) as { reqId: string; err: { stack: string } };
    expect(line.reqId).toBe('req-1');
    expect(line.err.stack).toContain('secretInternalFn');
  });
});
