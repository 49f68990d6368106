// The console in a real headless Chromium against a real gateway (a trained MLP router, so candidates have
// real scores) over the mock upstream: the page loads clean (no console error or warning, no failed
// request), shows the traffic the openai client sent, renders "try a prompt" exactly as POST /v1/route
// answers it, escapes what it shows, and asks for the admin key when there is one.
//
// Needs Chromium (`chromium` on PATH, e.g. Debian's /usr/bin/chromium; CI installs it). Without it this
// file FAILS, on purpose: a console nobody tested in a browser is not tested.
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor as waitUntil } from '../helpers/redis.js';
import { startStack, waitFor, type Stack } from '../helpers/stack.js';
import { CHROMIUM_ARGS } from '../../bench/lib/chromium.js';

const ARTIFACT = resolve(import.meta.dirname, '../../routers/p1-lexical-lr');
const KEY_ENV = 'CONSOLE_BROWSER_ADMIN_KEY';
const OPEN_ENV = 'CONSOLE_BROWSER_UNSET_KEY';
const ADMIN = 'browser-admin-key-7c21';
const XSS = '<img src=x onerror="window.__xss=1"> & <b>bold</b>';

function findChromium(): string {
  try {
    return execFileSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(
      'chromium is not installed (`command -v chromium` failed): the console browser test needs it. ' +
        'Install it (Debian: apt-get install chromium); CI installs it in .ci/run.',
    );
  }
}

// strong/weak priced like GPT-4 and Mixtral, routed by the P1 router (trained on those two model names).
const config = (keyEnv: string) => (url: string) => `
version: 1
server: { watch: false, access_log: false, admin_key_env: ${keyEnv} }
backends:
  - { name: strong, base_url: "${url}/strong/v1", model: gpt-4-1106-preview, price: { input_per_mtok: 24.7, output_per_mtok: 24.7 } }
  - { name: weak, base_url: "${url}/weak/v1", model: mixtral-8x7b-instruct-v0.1, price: { input_per_mtok: 0.24, output_per_mtok: 0.24 } }
policies:
  - name: auto
    candidates:
      - { backend: weak, as: mixtral-8x7b-instruct-v0.1 }
      - { backend: strong, as: gpt-4-1106-preview }
    embedder: { type: lexical, dim: 4096 }
    router: { type: mlp, artifact: ${ARTIFACT} }
    objective: { kind: utility, lambda: 15.89 }
    fallbacks: [strong]
    record_prompts: true
  - name: pinned
    candidates: [strong, weak]
    router: { type: fixed, backend: strong }
`;

/** The page's own dollar format (console.js `usd`), to compare what it renders with /v1/route's numbers. */
function usd(x: number): string {
  const a = Math.abs(x);
  const sign = x < 0 ? '-' : '';
  if (a === 0) return '$0';
  if (a >= 100) return `${sign}$${a.toFixed(2)}`;
  if (a >= 0.01) return `${sign}$${a.toFixed(4)}`;
  return `${sign}$${a.toFixed(Math.min(12, Math.ceil(-Math.log10(a)) + 2))}`;
}

let context: BrowserContext;
let profile: string;

beforeAll(async () => {
  const executablePath = findChromium();
  profile = await mkdtemp(join(tmpdir(), 'signalman-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
  });
});
afterAll(async () => {
  await context?.close();
  if (profile !== undefined) await rm(profile, { recursive: true, force: true });
});

/** A fresh tab that records every console error or warning, page error, failed request and HTTP error. */
async function openTab(): Promise<{ page: Page; problems: string[] }> {
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`requestfailed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} ${r.url()}`);
  });
  return { page, problems };
}

const send = async (s: Stack, model: string, content: string): Promise<string> => {
  const { response } = await s
    .client()
    .chat.completions.create({ model, messages: [{ role: 'user', content }] })
    .withResponse();
  const id = response.headers.get('x-signalman-request-id') as string;
  await waitFor(() => s.sink.records.some((r) => r.id === id));
  return id;
};
const recordOf = (s: Stack, id: string) => s.sink.records.find((r) => r.id === id)!;
const text = async (page: Page, selector: string) => ((await page.locator(selector).first().textContent()) ?? '').trim();

describe('console in Chromium, no admin key', () => {
  let stack: Stack;
  beforeAll(async () => {
    delete process.env[OPEN_ENV];
    stack = await startStack({ config: config(OPEN_ENV) });
  });
  afterAll(() => stack?.close());

  it('loads clean, shows the traffic, and renders try-a-prompt exactly as /v1/route answers', async () => {
    const { page, problems } = await openTab();
    const res = await page.goto(`${stack.gw.url}/ui`);
    expect(res?.status()).toBe(200);
    await page.locator('#main').waitFor({ state: 'visible' });
    expect(await page.locator('#auth').isVisible()).toBe(false);
    expect(await text(page, '#source')).toBe('Memory · this replica');
    await page.locator('#decisions-empty').waitFor({ state: 'visible' });

    // Traffic through the openai client, after the page is up: the page must pick it up by itself.
    const ids = [
      await send(stack, 'auto', 'What is the capital of Peru?'),
      await send(stack, 'auto', 'Prove that the square root of 2 is irrational, step by step.'),
      await send(stack, 'pinned', 'hello there'),
      await send(stack, 'auto', XSS),
    ];
    for (const id of ids) await page.locator(`#decisions tr[data-id="${id}"]`).waitFor({ timeout: 10_000 });
    for (const id of ids) {
      const rec = recordOf(stack, id);
      const row = `#decisions tr[data-id="${id}"]`;
      expect(await text(page, `${row} td[data-col=policy] .name`)).toBe(rec.policy);
      expect(await text(page, `${row} td[data-col=backend] [data-field=backend]`)).toBe(rec.backend);
      expect(await text(page, `${row} td[data-col=backend] [data-field=reason]`)).toBe(rec.reason);
      expect(await text(page, `${row} td[data-col=outcome] .badge`)).toBe('ok');
      expect(await page.locator(`${row} td[data-col=candidates] .cand`).count()).toBe(2);
    }
    // Newest first.
    expect(await page.locator('#decisions tbody tr').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.id))).toEqual(
      [...ids].reverse(),
    );
    // The recorded prompt is shown as text: no element made from it, no script run.
    expect(await text(page, `#decisions tr[data-id="${ids[3]}"] .prompt`)).toBe(`“${XSS}”`);
    expect(await page.locator('#decisions img, #decisions b').count()).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();

    // Policies: requests and where they went.
    await waitUntil(
      async () => (await text(page, '#policies tr[data-policy=auto] td[data-col=requests]')).startsWith('3'),
      10_000,
      'auto: 3 requests',
    );
    expect(await text(page, '#policies tr[data-policy=pinned] td[data-col=share] .legend')).toBe('strong 100.0%');

    // Try a prompt: the same body posted by the test must give what the page shows.
    const prompt = 'Derive the closed form of the sum of the first n cubes and prove it by induction.';
    await page.selectOption('#try-policy', 'auto');
    await page.fill('#try-prompt', prompt);
    await page.click('#try-submit');
    await page.locator('#try-result tr[data-candidate]').first().waitFor();
    const answer = await fetch(`${stack.gw.url}/v1/route`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'auto', messages: [{ role: 'user', content: prompt }] }),
    });
    const route = (await answer.json()) as {
      chosen: string;
      reason: string;
      candidates: Array<{ backend: string; quality: number; expectedCostUsd: number; utility: number }>;
    };
    expect(await text(page, '#try-chosen')).toBe(route.chosen);
    expect(await text(page, '#try-result .verdict .badge')).toBe(route.reason);
    expect(await text(page, '#try-why')).toContain('λ = 15.89');
    const shown = await page
      .locator('#try-result tr[data-candidate]')
      .evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.candidate));
    expect([...shown].sort()).toEqual(route.candidates.map((c) => c.backend).sort());
    for (const c of route.candidates) {
      const row = `#try-result tr[data-candidate="${c.backend}"]`;
      expect(await text(page, `${row} [data-field=quality] .barval`)).toBe(c.quality.toFixed(3));
      expect(await text(page, `${row} [data-field=cost] .barval`)).toBe(usd(c.expectedCostUsd));
      expect(await text(page, `${row} [data-field=utility] .barval`)).toBe(c.utility.toFixed(3));
      // The quality bar is the quality, as a share of its track.
      const width = await page.locator(`${row} [data-field=quality] .bar > span`).evaluate((e) => (e as HTMLElement).style.width);
      expect(width).toBe(`${(c.quality * 100).toFixed(1)}%`);
      expect(await page.locator(row).evaluate((e) => e.classList.contains('is-chosen'))).toBe(c.backend === route.chosen);
    }

    expect(problems).toEqual([]);
    await page.close();
  });
});

describe('console in Chromium behind the admin key', () => {
  let stack: Stack;
  beforeAll(async () => {
    process.env[KEY_ENV] = ADMIN;
    stack = await startStack({ config: config(KEY_ENV) });
  });
  afterAll(async () => {
    await stack?.close();
    delete process.env[KEY_ENV];
  });

  it('asks for the key, says so when it is wrong, shows the data once it is right, and remembers it for the tab', async () => {
    const id = await send(stack, 'pinned', 'behind the key');
    const { page, problems } = await openTab();
    await page.goto(`${stack.gw.url}/ui`);
    await page.locator('#auth').waitFor({ state: 'visible' });
    expect(await page.locator('#main').isVisible()).toBe(false);
    expect(await text(page, '#auth-env')).toBe(KEY_ENV);
    expect(problems).toEqual([]); // asking costs no failed request

    await page.fill('#auth-key', 'not-the-key');
    await page.click('#auth-form button[type=submit]');
    await page.locator('#auth-error').waitFor({ state: 'visible' });
    expect(await text(page, '#auth-error')).toContain('refused (401');
    expect(await page.locator('#main').isVisible()).toBe(false);
    expect(await page.evaluate(() => sessionStorage.getItem('signalman.console.key'))).toBeNull();
    // The only complaints are the refused calls themselves.
    expect(problems.length).toBeGreaterThan(0);
    for (const p of problems) expect(p).toMatch(/401/);
    problems.length = 0;

    await page.fill('#auth-key', ADMIN);
    await page.click('#auth-form button[type=submit]');
    await page.locator(`#decisions tr[data-id="${id}"]`).waitFor();
    expect(await page.locator('#auth').isVisible()).toBe(false);
    expect(await text(page, `#decisions tr[data-id="${id}"] [data-field=backend]`)).toBe('strong');

    // Kept for the tab: a reload goes straight to the data.
    await page.reload();
    await page.locator(`#decisions tr[data-id="${id}"]`).waitFor();
    expect(await page.locator('#auth').isVisible()).toBe(false);
    expect(problems).toEqual([]);

    await page.click('#signout');
    await page.locator('#auth').waitFor({ state: 'visible' });
    expect(await page.evaluate(() => sessionStorage.getItem('signalman.console.key'))).toBeNull();
    await page.close();
  });
});
