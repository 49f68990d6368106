/* global document, window, Node */
// Signalman console: polls GET /ui/api/summary and /ui/api/decisions, and explains a prompt with POST /v1/route.
// Plain DOM, no framework. Every string from the server reaches the page as text (textContent / text nodes),
// never as markup. The admin key, when the gateway has one, lives in this tab's sessionStorage only and is
// sent to /ui/api only.

const KEY_STORAGE = 'signalman.console.key';
const REFRESH_MS = 3000;
const DECISIONS_LIMIT = 50;
/** Candidates listed per decision before the rest fold into "+N more". */
const CANDIDATES_SHOWN = 3;
const PALETTE = 8;

const state = {
  key: sessionStorage.getItem(KEY_STORAGE),
  authRequired: false,
  timer: 0,
  /** backend name → palette index, stable for the life of the page. */
  colors: new Map(),
  policies: '',
};

const $ = (id) => document.getElementById(id);

class AuthError extends Error {}

// ---- DOM ----

/** An element; `props` sets class, data-*, title and plain attributes; children are nodes or text. */
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'data') for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
    else if (k === 'title') el.title = String(v);
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const sub = (text, cls = 'sub') => h('span', { class: cls }, text);

/** A horizontal bar, `fraction` of its track filled (width set through the CSSOM: no inline style markup). */
function bar(kind, fraction, extraClass = '') {
  const fill = h('span');
  fill.style.width = `${(Math.max(0, Math.min(1, fraction)) * 100).toFixed(1)}%`;
  return h('div', { class: `bar ${kind} ${extraClass}`.trim() }, fill);
}

function colorOf(backend) {
  const name = backend ?? '-';
  if (!state.colors.has(name)) state.colors.set(name, state.colors.size % PALETTE);
  return `c${state.colors.get(name)}`;
}

// ---- formatting ----

/** Dollars with the digits that matter: a cheap model costs a small fraction of a cent per request. */
function usd(x) {
  if (typeof x !== 'number' || !Number.isFinite(x)) return '–';
  const a = Math.abs(x);
  const sign = x < 0 ? '-' : '';
  if (a === 0) return '$0';
  if (a >= 100) return `${sign}$${a.toFixed(2)}`;
  if (a >= 0.01) return `${sign}$${a.toFixed(4)}`;
  return `${sign}$${a.toFixed(Math.min(12, Math.ceil(-Math.log10(a)) + 2))}`;
}

function ms(x) {
  if (typeof x !== 'number' || !Number.isFinite(x)) return '–';
  if (x < 1) return `${x.toFixed(2)} ms`;
  if (x < 100) return `${x.toFixed(1)} ms`;
  if (x < 10_000) return `${Math.round(x)} ms`;
  return `${(x / 1000).toFixed(1)} s`;
}

const score = (x) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(3) : '–');
const int = (x) => (typeof x === 'number' ? x.toLocaleString('en-US') : '–');
const pct = (x) => (typeof x === 'number' && Number.isFinite(x) ? `${x.toFixed(1)}%` : '–');
const clock = (t) => new Date(t).toLocaleTimeString('en-GB', { hour12: false });

function rate(perSecond) {
  if (perSecond >= 10) return `${perSecond.toFixed(1)} req/s`;
  return `${perSecond.toFixed(2)} req/s`;
}

const REASONS = {
  objective: 'the objective',
  guard_fallback: 'out of domain: guard fallback',
  fixed: 'fixed router',
  sticky: 'sticky conversation',
  no_text: 'no text to score',
};

const OUTCOME_CLASS = { ok: 'ok', fallback_ok: 'warn', client_abort: 'warn' };

// ---- data ----

async function getJson(path) {
  const headers = { accept: 'application/json' };
  if (state.key) headers.authorization = `Bearer ${state.key}`;
  const res = await fetch(path, { headers, cache: 'no-store' });
  if (res.status === 401) throw new AuthError('unauthorized');
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new Error(body?.error?.message ?? `HTTP ${res.status}`);
  return body;
}

function banner(text, bad = false) {
  const b = $('banner');
  b.hidden = text === null;
  b.classList.toggle('bad', bad);
  b.textContent = text ?? '';
}

function askKey(message) {
  window.clearTimeout(state.timer);
  $('main').hidden = true;
  $('signout').hidden = true;
  $('source').hidden = true;
  $('auth').hidden = false;
  const err = $('auth-error');
  err.hidden = !message;
  err.textContent = message ?? '';
  $('auth-key').value = '';
  $('auth-key').focus();
}

async function refresh() {
  window.clearTimeout(state.timer);
  try {
    const [summary, decisions] = await Promise.all([getJson('/ui/api/summary'), getJson(`/ui/api/decisions?limit=${DECISIONS_LIMIT}`)]);
    $('auth').hidden = true;
    $('main').hidden = false;
    $('signout').hidden = !state.authRequired;
    renderSummary(summary);
    renderDecisions(decisions);
    banner(summary.note);
    $('refreshed').textContent = `Updated ${clock(Date.now())}`;
  } catch (e) {
    if (e instanceof AuthError) {
      sessionStorage.removeItem(KEY_STORAGE);
      const had = state.key !== null;
      state.key = null;
      askKey(had ? 'That key was refused (401 Unauthorized). Check it and try again.' : null);
      return;
    }
    banner(`Refresh failed: ${e.message}. Retrying every ${REFRESH_MS / 1000} s.`, true);
  }
  state.timer = window.setTimeout(refresh, REFRESH_MS);
}

// ---- summary ----

function windowLabel(s) {
  const minutes = Math.max(1, Math.round(s.window.seconds / 60));
  if (s.source === 'redis') return `Last ${minutes} min · Redis per-minute totals · all replicas`;
  const base = `Last ${minutes} min · in-memory records of this replica`;
  return s.window.truncated ? `${base} (since ${clock(s.window.from)}: memory keeps the last ${int(s.window.capacity)} records)` : base;
}

function renderSummary(s) {
  const src = $('source');
  src.hidden = false;
  src.className = `pill ${s.source}`;
  src.textContent = s.source === 'redis' ? 'Redis · all replicas' : 'Memory · this replica';
  const label = windowLabel(s);
  $('window-label').textContent = label;
  $('foot-source').textContent = label;

  $('kpi-rate').textContent = rate(s.rate.per_second);
  $('kpi-rate-note').textContent = `${int(s.rate.requests)} requests in the last ${s.rate.seconds} s`;
  $('kpi-requests').textContent = int(s.total.requests);
  $('kpi-requests-note').textContent = `${int(s.total.errors)} errors · last ${Math.max(1, Math.round(s.window.seconds / 60))} min`;
  $('kpi-spend').textContent = usd(s.total.cost_usd);
  $('kpi-spend-note').textContent = `vs ${usd(s.total.counterfactual_cost_usd)} all on the dearest candidate`;
  $('kpi-savings').textContent = usd(s.total.savings_usd);
  $('kpi-savings-note').textContent =
    s.total.savings_pct === null ? 'counterfactual − actual' : `${pct(s.total.savings_pct)} of the counterfactual`;

  const rows = s.policies.map((p) => {
    const name = p.policy ?? 'not routed';
    const detail = p.policy === null ? 'direct or refused' : !p.configured ? 'no longer in the config' : p.router;
    const detailText = p.configured ? `${detail} · ${p.candidates.length} candidates` : detail;
    return h(
      'tr',
      { data: { policy: name } },
      h('td', { data: { col: 'policy' }, title: p.description ?? undefined }, h('span', { class: 'name' }, name), sub(detailText)),
      h(
        'td',
        { class: 'num', data: { col: 'requests' } },
        int(p.requests),
        sub(p.errors === 0 ? 'no errors' : `${int(p.errors)} error${p.errors === 1 ? '' : 's'} · ${pct((100 * p.errors) / p.requests)}`),
      ),
      h('td', { data: { col: 'share' } }, shareCell(p)),
      h('td', { class: 'num', data: { col: 'spend' } }, usd(p.cost_usd), sub(`of ${usd(p.counterfactual_cost_usd)}`)),
      h('td', { class: 'num', data: { col: 'savings' } }, usd(p.savings_usd), sub(p.savings_pct === null ? '–' : pct(p.savings_pct))),
    );
  });
  $('policies').tBodies[0].replaceChildren(...rows);

  // The policies the form offers: only when the set changes, so a choice survives the refresh.
  const names = s.policies.filter((p) => p.configured && p.policy !== null).map((p) => p.policy);
  if (names.join('\n') !== state.policies) {
    state.policies = names.join('\n');
    const select = $('try-policy');
    const keep = select.value;
    select.replaceChildren(...names.map((n) => h('option', { value: n }, n)));
    if (names.includes(keep)) select.value = keep;
  }
}

function shareCell(p) {
  if (p.routes.length === 0) return sub('no requests in the window', 'muted');
  const stack = h('div', {
    class: 'stack',
    role: 'img',
    'aria-label': p.routes.map((r) => `${r.backend ?? 'none'} ${pct(100 * r.share)}`).join(', '),
  });
  const legend = h('div', { class: 'legend' });
  for (const r of p.routes) {
    const seg = h('span', { class: colorOf(r.backend), title: `${r.backend ?? 'none'}: ${int(r.requests)} requests` });
    seg.style.width = `${(100 * r.share).toFixed(2)}%`;
    stack.append(seg);
    legend.append(
      h(
        'span',
        { data: { backend: r.backend ?? '-' } },
        h('span', { class: `sw ${colorOf(r.backend)}` }),
        `${r.backend ?? 'none'} ${pct(100 * r.share)}`,
      ),
    );
  }
  return [stack, legend];
}

// ---- decisions ----

function candidateLine(c, chosen) {
  return h(
    'div',
    { class: c.backend === chosen ? 'cand is-chosen' : 'cand', data: { backend: c.backend } },
    h('span', { class: 'cn', title: c.backend }, c.backend),
    h('span', { title: 'predicted quality' }, `q ${score(c.quality)}`),
    h('span', { title: 'expected cost' }, usd(c.expected_cost_usd)),
    h('span', { title: 'utility' }, `u ${score(c.utility)}`),
  );
}

function candidatesCell(d) {
  if (d.candidates.length === 0) return sub(d.reason === 'guard_fallback' ? 'not scored (out of domain)' : 'not scored', 'muted');
  const chosen = d.chosen ?? d.backend;
  const sorted = [...d.candidates].sort((a, b) => (a.backend === chosen ? -1 : b.backend === chosen ? 1 : b.utility - a.utility));
  const shown = sorted.slice(0, CANDIDATES_SHOWN).map((c) => candidateLine(c, chosen));
  const rest = sorted.slice(CANDIDATES_SHOWN);
  if (rest.length > 0) {
    shown.push(h('details', null, h('summary', null, `+${rest.length} more`), ...rest.map((c) => candidateLine(c, chosen))));
  }
  return h('div', { class: 'cands' }, shown);
}

function decisionRow(d) {
  const policyCell = [h('span', { class: 'name' }, d.policy ?? '—')];
  if (d.policy === null && d.model) policyCell.push(sub(`model ${d.model}`));
  if (d.prompt) policyCell.push(h('span', { class: 'prompt', title: d.prompt }, `“${d.prompt}”`));

  const backendCell = [h('span', { class: 'name', data: { field: 'backend' } }, d.backend ?? '—')];
  const why = [];
  if (d.reason) why.push(h('span', { class: 'badge', title: REASONS[d.reason] ?? d.reason, data: { field: 'reason' } }, d.reason));
  if (d.chosen && d.backend && d.chosen !== d.backend) why.push(` chose ${d.chosen}, fell back`);
  else if (d.attempts.length > 1) why.push(` ${d.attempts.length} attempts`);
  if (why.length > 0) backendCell.push(h('span', { class: 'sub' }, why));
  if (d.guard) backendCell.push(sub(`guard: ${d.guard.in_domain ? 'in' : 'out of'} domain (${score(d.guard.score)})`));

  const tokens =
    d.prompt_tokens === null
      ? null
      : `${int(d.prompt_tokens)} + ${int(d.completion_tokens ?? 0)} tok${d.tokens_estimated ? ' (est.)' : ''}`;
  const latencySub = d.stream && d.ttft_ms !== null ? `TTFT ${ms(d.ttft_ms)}` : `route ${ms(d.route_ms)}`;

  return h(
    'tr',
    { data: { id: d.id } },
    h(
      'td',
      { class: 'nowrap', data: { col: 'time' }, title: `request ${d.id}` },
      clock(d.ts),
      sub(`${d.endpoint}${d.stream ? ' · stream' : ''}`),
    ),
    h('td', { data: { col: 'policy' } }, policyCell),
    h('td', { data: { col: 'backend' } }, backendCell),
    h('td', { data: { col: 'candidates' } }, candidatesCell(d)),
    h('td', { class: 'num', data: { col: 'cost' } }, usd(d.cost_usd), tokens === null ? null : sub(tokens)),
    h('td', { class: 'num', data: { col: 'latency' } }, ms(d.total_ms), sub(latencySub)),
    h(
      'td',
      { data: { col: 'outcome' } },
      h('span', { class: `badge ${OUTCOME_CLASS[d.outcome] ?? 'bad'}` }, d.outcome),
      sub(d.error ? `${d.status} ${d.error}` : String(d.status)),
    ),
  );
}

function renderDecisions(res) {
  const body = $('decisions').tBodies[0];
  // Candidate lists the reader unfolded stay unfolded across the refresh.
  const open = new Set(
    [...body.querySelectorAll('tr[data-id]')].filter((tr) => tr.querySelector('details[open]')).map((tr) => tr.dataset.id),
  );
  body.replaceChildren(...res.data.map(decisionRow));
  for (const tr of body.querySelectorAll('tr[data-id]')) {
    const details = tr.querySelector('details');
    if (details && open.has(tr.dataset.id)) details.open = true;
  }
  $('decisions-empty').hidden = res.data.length > 0;
  const where = res.source === 'redis' ? 'from the Redis records stream (all replicas)' : 'from this replica’s memory';
  $('decisions-label').textContent = `Last ${res.data.length} of up to ${res.limit}, newest first, ${where}`;
}

// ---- try a prompt ----

function why(d) {
  if (d.reason === 'objective') {
    return typeof d.lambda === 'number'
      ? `highest utility = predicted quality − λ × expected cost, with λ = ${d.lambda}`
      : 'the cheapest candidate whose predicted quality clears the bar';
  }
  if (d.reason === 'guard_fallback') return 'the guard judged the prompt out of domain: the policy’s fallback';
  if (d.reason === 'fixed') return 'the policy’s router always picks this backend';
  if (d.reason === 'sticky') return 'a later turn of a conversation stays on its first model';
  if (d.reason === 'no_text') return 'the request had no text to score';
  return d.reason;
}

function barCell(kind, fraction, text, extraClass) {
  return h('div', { class: 'barcell' }, bar(kind, fraction, extraClass), h('span', { class: 'barval', data: { value: kind } }, text));
}

function renderTry(d) {
  const maxCost = Math.max(...d.candidates.map((c) => c.expectedCostUsd), 0);
  const maxUtility = Math.max(...d.candidates.map((c) => Math.abs(c.utility)), 0);
  const rows = [...d.candidates]
    .sort((a, b) => b.utility - a.utility)
    .map((c) =>
      h(
        'tr',
        { class: c.backend === d.chosen ? 'is-chosen' : null, data: { candidate: c.backend } },
        h(
          'td',
          null,
          h('span', { class: 'name' }, c.backend),
          c.backend === d.chosen ? [' ', h('span', { class: 'badge chosen' }, 'chosen')] : null,
        ),
        h('td', { data: { field: 'quality' } }, barCell('quality', c.quality, score(c.quality))),
        h('td', { data: { field: 'cost' } }, barCell('cost', maxCost > 0 ? c.expectedCostUsd / maxCost : 0, usd(c.expectedCostUsd))),
        h(
          'td',
          { data: { field: 'utility' } },
          barCell('utility', maxUtility > 0 ? Math.abs(c.utility) / maxUtility : 0, score(c.utility), c.utility < 0 ? 'neg' : ''),
        ),
      ),
    );
  const facts = [
    h('span', null, 'Chosen ', h('span', { class: 'big', id: 'try-chosen' }, d.chosen)),
    h('span', { class: 'badge' }, d.reason),
  ];
  if (d.guard)
    facts.push(
      sub(`guard: ${d.guard.inDomain ? 'in domain' : 'out of domain'} (${score(d.guard.score)} vs ${score(d.guard.threshold)})`, 'muted'),
    );
  facts.push(sub(`routed in ${ms(d.totalMs)}`, 'muted'));
  const order = d.order.length > 1 ? ` Order if it fails: ${d.order.join(' → ')}.` : '';
  $('try-result').replaceChildren(
    h('div', { class: 'verdict' }, facts),
    h('p', { class: 'muted', id: 'try-why' }, `Why: ${why(d)}.${order}`),
    h(
      'table',
      { class: 'data bars' },
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          h('th', null, 'Candidate'),
          h('th', null, 'Predicted quality'),
          h('th', null, 'Expected cost'),
          h('th', null, 'Utility'),
        ),
      ),
      h('tbody', null, rows),
    ),
  );
  $('try-result').hidden = false;
}

async function tryPrompt(ev) {
  ev.preventDefault();
  const policy = $('try-policy').value;
  const prompt = $('try-prompt').value.trim();
  if (!policy || !prompt) return;
  const button = $('try-submit');
  button.disabled = true;
  $('try-error').hidden = true;
  try {
    // /v1/route is the public API (no admin key): it is a dry run that forwards nothing.
    const res = await fetch('/v1/route', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ model: policy, messages: [{ role: 'user', content: prompt }] }),
    });
    const body = await res.json().catch(() => null);
    if (!res.ok) throw new Error(body?.error?.message ?? `HTTP ${res.status}`);
    renderTry(body);
  } catch (e) {
    $('try-result').hidden = true;
    $('try-error').textContent = `Could not route: ${e.message}`;
    $('try-error').hidden = false;
  } finally {
    button.disabled = false;
  }
}

// ---- start ----

async function start() {
  $('try-form').addEventListener('submit', tryPrompt);
  $('auth-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const key = $('auth-key').value.trim();
    if (!key) return;
    state.key = key;
    sessionStorage.setItem(KEY_STORAGE, key);
    void refresh();
  });
  $('signout').addEventListener('click', () => {
    sessionStorage.removeItem(KEY_STORAGE);
    state.key = null;
    askKey(null);
  });
  let session;
  try {
    session = await getJson('/ui/api/session');
  } catch (e) {
    banner(`Cannot reach the gateway: ${e.message}. Reload the page to try again.`, true);
    return;
  }
  state.authRequired = session.auth_required === true;
  $('auth-env').textContent = session.admin_key_env;
  if (state.authRequired && !state.key) askKey(null);
  else void refresh();
}

void start();
