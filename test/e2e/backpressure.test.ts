// A client that reads a long stream slowly: the gateway pauses its upstream socket instead of buffering,
// resumes on drain, and the client still gets every event, in order, ending with [DONE].
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../helpers/stack.js';

let stack: Stack;
beforeAll(async () => {
  // ~100k events of ~200 bytes: far more than the socket buffers between client, gateway and mock.
  stack = await startStack({ mock: { completionTokens: 100_000 } });
});
afterAll(() => stack.close());

function readSlowly(body: string, pauseMs: number): Promise<{ text: string; pauses: number }> {
  return new Promise((resolve, reject) => {
    const url = new URL(`${stack.gw.url}/v1/chat/completions`);
    const req = request(url, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      const parts: Buffer[] = [];
      let received = 0;
      let pauses = 0;
      res.on('data', (c: Buffer) => {
        parts.push(c);
        received += c.length;
        // Stall every ~1 MB for a while, as a slow consumer would.
        if (received > (pauses + 1) * 1_000_000) {
          pauses++;
          res.pause();
          setTimeout(() => res.resume(), pauseMs);
        }
      });
      res.on('end', () => resolve({ text: Buffer.concat(parts).toString('utf8'), pauses }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('stream backpressure', () => {
  it('a slow reader gets the whole stream, event for event, as the upstream sent it', async () => {
    const base = { model: 'weak', messages: [{ role: 'user', content: 'a very long answer please' }] };
    const plain = await stack.client().chat.completions.create(base as never);
    const expected = (plain as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content;

    const { text, pauses } = await readSlowly(JSON.stringify({ ...base, stream: true }), 300);
    expect(pauses).toBeGreaterThanOrEqual(3);
    const events = text.split('\n\n').filter((e) => e !== '');
    expect(events.at(-1)).toBe('data: [DONE]');
    let content = '';
    for (const e of events.slice(0, -1)) {
      expect(e.startsWith('data: ')).toBe(true);
      const chunk = JSON.parse(e.slice(6)) as { choices: Array<{ delta: { content?: string } }> };
      content += chunk.choices[0]?.delta.content ?? '';
    }
    expect(content.length).toBeGreaterThan(50_000);
    expect(content).toBe(expected);
  }, 60_000);
});
