// One front door: every API route with a JSON body (the three forwarding endpoints and /v1/route) passes
// the same checks on the real listener and answers the same problem with the same words.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, twoBackends, type Stack } from '../helpers/stack.js';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ config: (url) => twoBackends(url).replace('server: {', 'server: { body_limit_bytes: 4096,') });
});
afterAll(() => stack.close());

const ROUTES = ['/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/route'];
type ErrorBody = { error: { code: string; message: string; type: string; param: string | null } };

async function post(path: string, body: string, contentType = 'application/json') {
  const res = await fetch(`${stack.gw.url}${path}`, { method: 'POST', body, headers: { 'content-type': contentType } });
  return { status: res.status, headers: res.headers, body: (await res.json()) as ErrorBody };
}

describe('front door', () => {
  it.each([
    ['malformed JSON', '{"model": ', 'application/json', 400, 'invalid_json'],
    ['an empty body', '', 'application/json', 400, 'invalid_json'],
    ['a non-JSON content type', 'model=auto', 'text/plain', 415, 'unsupported_media_type'],
    ['a body over the limit', JSON.stringify({ model: 'auto', pad: 'x'.repeat(5000) }), 'application/json', 413, 'body_too_large'],
  ])('answers %s identically on every JSON route', async (_what, body, type, status, code) => {
    const answers = await Promise.all(ROUTES.map((r) => post(r, body, type)));
    for (const [i, a] of answers.entries()) {
      expect(a.status, ROUTES[i]).toBe(status);
      expect(a.body.error.code, ROUTES[i]).toBe(code);
      expect(a.headers.get('x-signalman-request-id'), ROUTES[i]).toBeTruthy();
      expect(a.headers.get('server-timing'), ROUTES[i]).toMatch(/^gw;/);
    }
    // Same words, not just the same code: one module writes them.
    expect(new Set(answers.map((a) => a.body.error.message.replace(/position \d+.*$/, ''))).size).toBe(1);
  });

  it('forwards a chat completion with the routing headers, and explains the same request', async () => {
    const req = JSON.stringify({ model: 'auto', messages: [{ role: 'user', content: 'hi' }] });
    const res = await fetch(`${stack.gw.url}/v1/chat/completions`, {
      method: 'POST',
      body: req,
      headers: { 'content-type': 'application/json' },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-signalman-model')).toBe('weak');
    expect(res.headers.get('x-signalman-policy')).toBe('auto');
    expect(((await res.json()) as { object: string }).object).toBe('chat.completion');
    const route = await fetch(`${stack.gw.url}/v1/route`, { method: 'POST', body: req, headers: { 'content-type': 'application/json' } });
    expect(route.status).toBe(200);
    expect(route.headers.get('server-timing')).toMatch(/^gw;/);
    expect(await route.json()).toMatchObject({ object: 'signalman.route', policy: 'auto', chosen: 'weak', order: ['weak', 'strong'] });
  });

  it('answers model errors in OpenAI shape on the routed paths', async () => {
    const unknown = await post('/v1/chat/completions', JSON.stringify({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] }));
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ code: 'model_not_found', param: 'model' });
    const backend = await post('/v1/route', JSON.stringify({ model: 'weak', messages: [{ role: 'user', content: 'hi' }] }));
    expect(backend.status).toBe(404);
    expect(backend.body.error.message).toContain('is a backend, not a policy');
  });

  it('leaves GET routes and unknown paths to Fastify', async () => {
    expect((await fetch(`${stack.gw.url}/v1/models`)).status).toBe(200);
    const get = await fetch(`${stack.gw.url}/v1/chat/completions`);
    expect(get.status).toBe(404);
  });
});
