// app.inject() (no socket) reaches the forwarding endpoints through Fastify's routes rather than the
// fast path; both must behave the same.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../helpers/stack.js';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(() => stack.close());

describe('Fastify routes (app.inject)', () => {
  it('forwards a chat completion with the routing headers', async () => {
    const res = await stack.gw.app.inject({
      method: 'POST', url: '/v1/chat/completions',
      payload: { model: 'auto', messages: [{ role: 'user', content: 'hi' }] },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-signalman-model']).toBe('weak');
    expect(res.headers['x-signalman-request-id']).toBeTruthy();
    expect(res.json().object).toBe('chat.completion');
  });

  it('answers errors in OpenAI shape', async () => {
    const res = await stack.gw.app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { model: 'nope', messages: [{ role: 'user', content: 'hi' }] } });
    expect(res.statusCode).toBe(404);
    expect(res.json().error).toMatchObject({ code: 'model_not_found', param: 'model' });
    const bad = await stack.gw.app.inject({ method: 'POST', url: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, payload: '{"model":' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.code).toBe('invalid_json');
  });
});
