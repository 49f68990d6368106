// docs/console.png: the built-in console (/ui) of the embedded demo (configs/default.yaml over the mock
// upstream, as `signalman serve` runs it with no --config), after some varied traffic and one "try a
// prompt". Needs a Chromium: /usr/bin/chromium, or CHROMIUM=/path/to/chrome.
// Run: npx tsx bench/console-screenshot.ts [out.png]   (or node dist/bench/console-screenshot.js after a build)
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { chromium } from 'playwright-core';
import { packageRoot } from '../src/cli/paths.js';
import { startMockUpstream } from '../src/mock/server.js';
import { startGateway } from '../src/server/listen.js';
import { CHROMIUM_ARGS } from './lib/chromium.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

const TRAFFIC: Array<{ model: string; prompt: string; stream?: boolean }> = [
  { model: 'auto', prompt: 'What is the capital of Peru?' },
  { model: 'auto', prompt: 'Prove that the square root of 2 is irrational, step by step.' },
  { model: 'auto', prompt: 'Write a haiku about autumn rain.' },
  { model: 'auto', prompt: 'Derive the closed form of the sum of the first n cubes and prove it by induction.', stream: true },
  { model: 'auto', prompt: 'Translate "good morning" into Spanish.' },
  { model: 'auto', prompt: 'Explain the difference between TCP and UDP with examples of when to use each.' },
  { model: 'auto-open', prompt: 'Write a Python function that merges two sorted arrays.' },
  { model: 'auto-open', prompt: 'Summarise the causes of the French Revolution in three sentences.' },
  { model: 'auto-open', prompt: 'What is 17 times 23?' },
  { model: 'auto-open', prompt: 'Write a SQL query that finds duplicate emails in a users table.', stream: true },
  { model: 'expert', prompt: 'Can my landlord keep my deposit for normal wear and tear?' },
  { model: 'expert', prompt: 'Is a verbal contract legally binding in court?' },
  { model: 'expert', prompt: 'How should I think about diversifying a retirement portfolio?' },
  { model: 'expert', prompt: 'What are the early symptoms of type 2 diabetes?' },
  { model: 'expert', prompt: 'Suggest a name for a golden retriever puppy.' },
  { model: 'auto', prompt: 'List three uses of a paperclip.' },
  { model: 'auto-open', prompt: 'Give me a regular expression that validates an IPv4 address, and explain it.' },
];
const TRY_PROMPT = 'Prove that there are infinitely many prime numbers.';

async function main(): Promise<void> {
  const out = resolve(process.argv[2] ?? join(packageRoot(), 'docs', 'console.png'));
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (set CHROMIUM=/path/to/chrome)`);
  const mock = await startMockUpstream({ host: '127.0.0.1', port: 0 });
  process.env.SIGNALMAN_MOCK_URL = mock.url;
  const gw = await startGateway({
    configFile: join(packageRoot(), 'configs', 'default.yaml'),
    logger: pino({ level: 'warn' }),
    accessLog: { write: () => true },
    host: '127.0.0.1',
    port: 0,
    watch: false,
  });
  const profile = await mkdtemp(join(tmpdir(), 'signalman-chromium-'));
  try {
    for (const t of TRAFFIC) {
      const res = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: t.model, stream: t.stream ?? false, messages: [{ role: 'user', content: t.prompt }] }),
      });
      await res.arrayBuffer();
      if (!res.ok) throw new Error(`${t.model}: HTTP ${res.status}`);
    }
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 900 },
      deviceScaleFactor: 1,
    });
    try {
      const page = context.pages()[0] ?? (await context.newPage());
      await page.goto(`${gw.url}/ui`);
      await page.locator('#decisions tbody tr').first().waitFor();
      await page.selectOption('#try-policy', 'auto');
      await page.fill('#try-prompt', TRY_PROMPT);
      await page.click('#try-submit');
      await page.locator('#try-result tr[data-candidate]').first().waitFor();
      await page.screenshot({ path: out });
    } finally {
      await context.close();
    }
    console.log(`wrote ${out}`);
  } finally {
    await gw.close(1000);
    await mock.close();
    await rm(profile, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
