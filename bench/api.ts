/**
 * HTTP API benchmark: the real Wegent server (startServer, SQLite) against a bare Fastify server on the
 * same machine in the same run. Each server runs in its own child process (bench/lib/server-child.ts);
 * autocannon, the load generator, runs in this process. With two cores, each side gets one.
 *
 * Environment: BENCH_DURATION (seconds per measurement, default 10), BENCH_WARMUP (seconds, default 3),
 * BENCH_CONNECTIONS (default 50), BENCH_APPLY_RUNS (default 5), BENCH_SCENARIOS (comma-separated subset of
 * get-one, list-100, create, apply), BENCH_CPU_PROF (a directory: a V8 CPU profile of the Wegent server
 * during each measured load scenario and the apply runs is written there, e.g. wegent-get-one.cpuprofile;
 * summarise one with `node --import tsx bench/lib/profile-top.ts <file> [count] [requests]`). A run with BENCH_SCENARIOS or BENCH_CPU_PROF prints its figures but leaves docs/benchmarks.md alone.
 */
import { call, expectStatus } from './lib/http.js';
import { envNumber, machineBusyMs, selectedScenarios } from './lib/measure.js';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon, { type Options, type Request as AutocannonRequest, type Result } from 'autocannon';
import { printYaml } from '@wegent/core';
import type { Benchmark, BenchmarkReport } from './lib/benchmark.js';
import { fmt, machineLine, limitsAndTargets, markdownTable, type Table } from './lib/report.js';
import { ChildServer } from './lib/servers.js';
import { applyBatch, ghost } from './lib/documents.js';
import type { BareFixtures } from './lib/server-child.js';


const TARGET_GET_RATIO = 0.4;
const TARGET_APPLY_MS = 2000;
const APPLY_DOCUMENTS = 1000;
const DEFAULT_BODY_LIMIT = 1024 * 1024;
/** Above this share of a core used by other processes during a measurement, the figures are flagged. */
const NOISY_OTHER_CPU = 0.25;
/** At or above this share of a core, autocannon itself may be what limits req/s. */
const LOADER_SATURATED = 0.9;
const ALL_SCENARIOS = ['get-one', 'list-100', 'create', 'apply'] as const;

/**
 * One autocannon measurement with the CPU used over the same interval (1 = one core): by the server, by
 * this process (the load generator) and by everything else on the machine (other processes, the kernel's
 * network stack), from the machine-wide counters of os.cpus().
 */
interface Measurement {
  result: Result;
  serverCpu: number;
  loaderCpu: number;
  otherCpu: number;
  /** Server CPU time per request served, in microseconds: less sensitive to other load than req/s. */
  serverMicrosPerRequest: number;
}

async function measure(server: ChildServer, options: Options, profileFile?: string): Promise<Measurement> {
  if (profileFile) await server.profileStart();
  const before = await server.usage();
  const selfBefore = process.cpuUsage();
  const busyBefore = machineBusyMs();
  const t0 = performance.now();
  const result = await autocannon(options);
  const wallMs = performance.now() - t0;
  const busy = (machineBusyMs() - busyBefore) / wallMs;
  const self = process.cpuUsage(selfBefore);
  const after = await server.usage();
  if (profileFile) await server.profileStop(profileFile);
  const serverCpu = (after.cpuMicros - before.cpuMicros) / 1000 / wallMs;
  const loaderCpu = (self.user + self.system) / 1000 / wallMs;
  const serverMicrosPerRequest = (after.cpuMicros - before.cpuMicros) / Math.max(1, result.requests.total);
  return { result, serverCpu, loaderCpu, otherCpu: Math.max(0, busy - serverCpu - loaderCpu), serverMicrosPerRequest };
}

interface Scenario {
  id: string;
  label: string;
  expectStatus: number;
  /** autocannon options (without duration) for each side. */
  wegent: Options;
  bare: Options;
}

interface ScenarioFigures {
  scenario: Scenario;
  wegent: Measurement;
  bare: Measurement;
}

function sample(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

function problems(m: Measurement, expectStatus: number): string {
  const r = m.result;
  const other = Object.entries(r.statusCodeStats ?? {})
    .filter(([code]) => Number(code) !== expectStatus)
    .map(([code, s]) => `${s.count}×${code}`);
  const out = [...other];
  if (r.errors) out.push(`${r.errors} errors`);
  if (r.timeouts) out.push(`${r.timeouts} timeouts`);
  return out.join(', ');
}

async function run({ machine, log }: Parameters<Benchmark['run']>[0]): Promise<BenchmarkReport> {
  const duration = envNumber('BENCH_DURATION', 10, 1);
  const warmup = envNumber('BENCH_WARMUP', 3, 0);
  const connections = envNumber('BENCH_CONNECTIONS', 50, 1);
  const applyRuns = envNumber('BENCH_APPLY_RUNS', 5, 1);
  const profileDir = process.env.BENCH_CPU_PROF ? path.resolve(process.env.BENCH_CPU_PROF) : undefined;
  const selected = selectedScenarios('BENCH_SCENARIOS', ALL_SCENARIOS);
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  const started = Date.now();

  // The apply body first: it decides whether the body limit must be raised.
  const applyDocs = applyBatch(APPLY_DOCUMENTS);
  const kinds = applyDocs.reduce<Record<string, number>>((acc, d) => ({ ...acc, [String(d.kind)]: (acc[String(d.kind)] ?? 0) + 1 }), {});
  const applyYaml = printYaml(applyDocs);
  const applyBytes = Buffer.byteLength(applyYaml);
  const maxBodyBytes = applyBytes <= DEFAULT_BODY_LIMIT ? DEFAULT_BODY_LIMIT : Math.ceil((applyBytes * 1.1) / 1024) * 1024;

  const tmp = mkdtempSync(path.join(os.tmpdir(), 'wegent-bench-'));
  const adminPassword = `${randomBytes(24).toString('base64url')}-Aa1`;
  const userPassword = `${randomBytes(24).toString('base64url')}-Bb2`;
  const overrides = {
    port: 0,
    host: '127.0.0.1',
    dataDir: tmp,
    databaseUrl: `sqlite:${path.join(tmp, 'wegent.db')}`,
    rate: { login: 0, default: 0, send: 0, aiCreate: 0 },
    ...(maxBodyBytes !== DEFAULT_BODY_LIMIT ? { maxBodyBytes } : {}),
  };
  const limits = [
    'rate limits: off (`rate: {login: 0, default: 0, send: 0, aiCreate: 0}`)',
    maxBodyBytes === DEFAULT_BODY_LIMIT ? `body limit: ${fmt.bytes(maxBodyBytes)} (server default, unchanged)` : `body limit: RAISED to ${fmt.bytes(maxBodyBytes)} (default 1 MiB) for the ${fmt.bytes(applyBytes)} apply body`,
    'documents per apply: 2,000 (server default, unchanged)',
    'database: SQLite file in a fresh temporary directory (server defaults: WAL, synchronous=NORMAL); public seed resources on',
    'logger: pino level silent',
    'sandboxes: off (WEGENT_SANDBOX_DRIVER=none)',
    `load: autocannon, ${connections} connections, pipelining 1, ${warmup} s warm-up then ${duration} s measured per scenario and server`,
    `apply: ${applyRuns} measured runs after 1 warm-up run, one request each, fresh namespace per run`,
  ];
  log(`limits: ${limits.join('; ')}`);

  let wegent: ChildServer | undefined;
  let bare: ChildServer | undefined;
  try {
    // ---- Wegent, set up as a normal user
    log('starting Wegent (child process)…');
    wegent = await ChildServer.start({ kind: 'wegent', overrides, env: { WEGENT_ADMIN_PASSWORD: adminPassword } });
    const W = wegent.url;
    const admin = await expectStatus('admin login', call(W, 'POST', '/api/v1/auth/login', { json: { username: 'admin', password: adminPassword } }), 200);
    const adminToken = (admin.body as { accessToken: string }).accessToken;
    await expectStatus('create user', call(W, 'POST', '/api/v1/admin/users', { token: adminToken, json: { username: 'bench', email: 'bench@example.com', password: userPassword, role: 'user' } }), 201);
    const login = await expectStatus('user login', call(W, 'POST', '/api/v1/auth/login', { json: { username: 'bench', password: userPassword } }), 200);
    const token = (login.body as { accessToken: string }).accessToken;
    const auth = { authorization: `Bearer ${token}`, accept: 'application/json' };

    await expectStatus('create the Ghost to read', call(W, 'POST', '/api/v1/namespaces/default/ghosts', { token, json: ghost('bench-ghost', 0) }), 201);
    const one = await expectStatus('read the Ghost', call(W, 'GET', '/api/v1/namespaces/default/ghosts/bench-ghost', { token }), 200);
    const hundred = Array.from({ length: 100 }, (_, i) => ghost(`ghost-${String(i).padStart(3, '0')}`, i));
    await expectStatus('apply 100 Ghosts', call(W, 'POST', '/api/v1/namespaces/bench/apply', { token, json: hundred }), 200);
    const list = await expectStatus('list 100 Ghosts', call(W, 'GET', '/api/v1/namespaces/bench/ghosts?limit=100', { token }), 200);
    const listed = (list.body as { items: unknown[] }).items.length;
    if (listed !== 100) throw new Error(`list 100 Ghosts: got ${listed} items`);
    const created = await expectStatus('create sample', call(W, 'POST', '/api/v1/namespaces/bench-create/ghosts', { token, json: ghost('sample', 1) }), 201);

    const applyOnce = async (ns: string): Promise<{ ms: number; body: unknown }> => {
      const t0 = performance.now();
      const r = await call(W, 'POST', `/api/v1/namespaces/${ns}/apply`, { token, yaml: applyYaml });
      const ms = performance.now() - t0;
      if (r.status !== 200) throw new Error(`apply ${APPLY_DOCUMENTS} documents: HTTP ${r.status}: ${r.text.slice(0, 800)}`);
      const results = (r.body as { results: Array<{ action: string }> }).results;
      const createdCount = results.filter((x) => x.action === 'created').length;
      if (results.length !== APPLY_DOCUMENTS || createdCount !== APPLY_DOCUMENTS) throw new Error(`apply: ${results.length} results, ${createdCount} created (expected ${APPLY_DOCUMENTS})`);
      return { ms, body: r.body };
    };
    log('apply warm-up run…');
    const applyWarm = await applyOnce('apply-warm');

    // ---- bare Fastify, answering the very bodies Wegent answered
    log('starting bare Fastify (child process)…');
    const fixtures: BareFixtures = { one: one.body, list: list.body, created: created.body as BareFixtures['created'], applied: applyWarm.body };
    bare = await ChildServer.start({ kind: 'bare', bodyLimit: maxBodyBytes, fixtures });
    const B = bare.url;

    let seq = 0;
    const createRequest = (prefix: string, base: { method: string; path: string; headers: Record<string, string> }): AutocannonRequest => ({
      ...base,
      setupRequest: (req) => ({ ...req, body: JSON.stringify(ghost(`${prefix}-${(seq++).toString(36)}`, seq)) }),
    });
    const scenarios: Scenario[] = [
      {
        id: 'get-one',
        label: 'GET one Ghost',
        expectStatus: 200,
        wegent: { url: W, requests: [{ method: 'GET', path: '/api/v1/namespaces/default/ghosts/bench-ghost', headers: auth }] },
        bare: { url: B, requests: [{ method: 'GET', path: '/one', headers: auth }] },
      },
      {
        id: 'list-100',
        label: 'GET list of 100 Ghosts',
        expectStatus: 200,
        wegent: { url: W, requests: [{ method: 'GET', path: '/api/v1/namespaces/bench/ghosts?limit=100', headers: auth }] },
        bare: { url: B, requests: [{ method: 'GET', path: '/list', headers: auth }] },
      },
      {
        id: 'create',
        label: 'POST create a Ghost',
        expectStatus: 201,
        wegent: { url: W, requests: [createRequest('w', { method: 'POST', path: '/api/v1/namespaces/bench-create/ghosts', headers: { ...auth, 'content-type': 'application/json' } })] },
        bare: { url: B, requests: [createRequest('b', { method: 'POST', path: '/create', headers: { ...auth, 'content-type': 'application/json' } })] },
      },
    ];

    const figures: ScenarioFigures[] = [];
    for (const s of scenarios.filter((x) => selected.has(x.id))) {
      const side = async (name: 'bare' | 'wegent', server: ChildServer, opts: Options) => {
        if (warmup > 0) await autocannon({ ...opts, connections, duration: warmup });
        const profileFile = profileDir && name === 'wegent' ? path.join(profileDir, `wegent-${s.id}.cpuprofile`) : undefined;
        const m = await measure(server, { ...opts, connections, duration }, profileFile);
        if (profileFile) log(`CPU profile of Wegent during '${s.label}' (${fmt.int(m.result.requests.total)} requests): ${profileFile}`);
        const trouble = problems(m, s.expectStatus);
        log(`${s.label} — ${name}: ${fmt.int(m.result.requests.average)} req/s, p50 ${fmt.ms(m.result.latency.p50)}, p99 ${fmt.ms(m.result.latency.p99)}; server ${fmt.us(m.serverMicrosPerRequest)} CPU/req; CPU server ${fmt.pct(m.serverCpu)}, autocannon ${fmt.pct(m.loaderCpu)}, other ${fmt.pct(m.otherCpu)}${trouble ? ` (${trouble})` : ''}`);
        return m;
      };
      const b = await side('bare', bare, s.bare);
      const w = await side('wegent', wegent, s.wegent);
      figures.push({ scenario: s, bare: b, wegent: w });
    }

    // ---- 1,000-document apply: wall time of one request, fresh namespace each run
    const bareApply: number[] = [];
    const applyMs: number[] = [];
    let applyCpu = 0;
    let applyOther = 0;
    if (selected.has('apply')) {
      await call(B, 'POST', '/apply', { yaml: applyYaml });
      for (let i = 0; i < applyRuns; i++) {
        const t0 = performance.now();
        const r = await call(B, 'POST', '/apply', { yaml: applyYaml });
        bareApply.push(performance.now() - t0);
        if (r.status !== 200) throw new Error(`bare apply: HTTP ${r.status}`);
      }
      const applyProfile = profileDir ? path.join(profileDir, 'wegent-apply.cpuprofile') : undefined;
      if (applyProfile) await wegent.profileStart();
      const before = await wegent.usage();
      const busyBefore = machineBusyMs();
      const selfBefore = process.cpuUsage();
      const t0 = performance.now();
      for (let i = 1; i <= applyRuns; i++) {
        const { ms } = await applyOnce(`apply-${i}`);
        applyMs.push(ms);
        log(`apply ${APPLY_DOCUMENTS} documents, run ${i}: ${fmt.ms(ms)}`);
      }
      const wall = performance.now() - t0;
      const self = process.cpuUsage(selfBefore);
      const after = await wegent.usage();
      if (applyProfile) {
        await wegent.profileStop(applyProfile);
        log(`CPU profile of Wegent during the ${applyRuns} apply runs: ${applyProfile}`);
      }
      applyCpu = (after.cpuMicros - before.cpuMicros) / 1000;
      applyOther = Math.max(0, (machineBusyMs() - busyBefore - applyCpu - (self.user + self.system) / 1000) / wall);
      applyCpu /= applyRuns;
    }
    const wegentRss = (await wegent.usage()).rss;

    // ---- report
    const pass = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
    const targetRows: string[][] = [];
    const getOne = figures.find((f) => f.scenario.id === 'get-one');
    const getTarget = `GET one resource ≥ ${fmt.pct(TARGET_GET_RATIO)} of bare Fastify's req/s (SQLite)`;
    if (getOne) {
      const ratio = getOne.wegent.result.requests.average / getOne.bare.result.requests.average;
      targetRows.push([getTarget, `${fmt.ratio(ratio)} (${fmt.int(getOne.wegent.result.requests.average)} vs ${fmt.int(getOne.bare.result.requests.average)} req/s)`, pass(ratio >= TARGET_GET_RATIO)]);
    } else targetRows.push([getTarget, 'not run', '—']);
    const applyTarget = `apply ${fmt.int(APPLY_DOCUMENTS)} documents ≤ ${TARGET_APPLY_MS / 1000} s (p50 of ${applyRuns} runs)`;
    if (applyMs.length) {
      const p50 = sample(applyMs, 0.5);
      targetRows.push([applyTarget, `p50 ${fmt.ms(p50)}, max ${fmt.ms(Math.max(...applyMs))}`, pass(p50 <= TARGET_APPLY_MS)]);
    } else targetRows.push([applyTarget, 'not run', '—']);
    const targets: Table = { title: 'Targets', columns: ['Target', 'Measured', 'Result'], rows: targetRows };

    const load: Table = {
      title: `HTTP load (autocannon, ${connections} connections, ${duration} s each after ${warmup} s warm-up; CPU: 100% = one core)`,
      columns: ['Scenario', 'Wegent req/s', 'bare req/s', 'Wegent/bare', 'Wegent p50', 'Wegent p99', 'bare p50', 'bare p99', 'server CPU per request W / bare', 'server CPU W / bare', 'autocannon CPU W / bare', 'other CPU W / bare', 'response', 'notes'],
      right: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
      rows: figures.map(({ scenario: s, wegent: w, bare: b }) => {
        const notes = [
          problems(w, s.expectStatus) && `Wegent: ${problems(w, s.expectStatus)}`,
          problems(b, s.expectStatus) && `bare: ${problems(b, s.expectStatus)}`,
          b.loaderCpu >= LOADER_SATURATED && `autocannon saturated its core during bare: bare req/s is a lower bound`,
          w.loaderCpu >= LOADER_SATURATED && `autocannon saturated its core during Wegent: Wegent req/s is a lower bound`,
        ]
          .filter(Boolean)
          .join('; ');
        const bytes = w.result.throughput.total / Math.max(1, w.result.requests.total);
        return [
          s.label,
          fmt.int(w.result.requests.average),
          fmt.int(b.result.requests.average),
          fmt.ratio(w.result.requests.average / b.result.requests.average),
          fmt.ms(w.result.latency.p50),
          fmt.ms(w.result.latency.p99),
          fmt.ms(b.result.latency.p50),
          fmt.ms(b.result.latency.p99),
          `${fmt.us(w.serverMicrosPerRequest)} / ${fmt.us(b.serverMicrosPerRequest)}`,
          `${fmt.pct(w.serverCpu)} / ${fmt.pct(b.serverCpu)}`,
          `${fmt.pct(w.loaderCpu)} / ${fmt.pct(b.loaderCpu)}`,
          `${fmt.pct(w.otherCpu)} / ${fmt.pct(b.otherCpu)}`,
          fmt.bytes(Math.round(bytes)),
          notes || '—',
        ];
      }),
    };
    const apply: Table = {
      title: `Apply ${fmt.int(APPLY_DOCUMENTS)} documents in one request (POST /api/v1/namespaces/{ns}/apply, YAML, ${fmt.bytes(applyBytes)})`,
      columns: ['Server', 'runs', 'p50', 'max', 'min', 'server CPU per run', 'other CPU'],
      right: [1, 2, 3, 4, 5, 6],
      rows: applyMs.length
        ? [
            ['Wegent', String(applyRuns), fmt.ms(sample(applyMs, 0.5)), fmt.ms(Math.max(...applyMs)), fmt.ms(Math.min(...applyMs)), fmt.ms(applyCpu), fmt.pct(applyOther)],
            ['bare Fastify (receive the body, answer the same result; no parsing)', String(applyRuns), fmt.ms(sample(bareApply, 0.5)), fmt.ms(Math.max(...bareApply)), fmt.ms(Math.min(...bareApply)), '—', '—'],
          ]
        : [],
    };
    const limitsTable: Table = { title: 'Limits set by this benchmark', columns: ['Limit'], rows: limits.map((l) => [l]) };
    const verdicts = targets.rows.map((r) => `${r[2]}  ${r[0]} — ${r[1]}`);
    const busiest = Math.max(applyOther, ...figures.flatMap((f) => [f.wegent.otherCpu, f.bare.otherCpu]));
    const contention =
      busiest > NOISY_OTHER_CPU
        ? `**Caution:** other processes on the machine used up to ${fmt.pct(busiest)} of a core during the measurements (column *other CPU*, which also counts the kernel's loopback network work); the figures are disturbed. Rerun on an idle machine for clean numbers.`
        : `Other processes used at most ${fmt.pct(busiest)} of a core during the measurements (column *other CPU*, which also counts the kernel's loopback network work).`;
    if (busiest > NOISY_OTHER_CPU) verdicts.push(`NOTE  other processes used up to ${fmt.pct(busiest)} of a core during the measurements: figures disturbed`);

    const mixture = Object.entries(kinds)
      .map(([k, n]) => `${n} ${k}s`)
      .join(', ');
    const markdown = [
      '## HTTP API (`bench/api.ts`)',
      '',
      `Run ${new Date(started).toISOString().replace(/\.\d+Z$/, 'Z')} on ${machineLine(machine)}; took ${Math.round((Date.now() - started) / 1000)} s.`,
      '',
      'The real Wegent server (`startServer` from packages/server/src/server.ts, SQLite) and a bare Fastify server',
      '(`fastify()` from the same package, one route per scenario answering the very JSON body Wegent answered)',
      'each run in their **own child process**, loaded one at a time; autocannon runs in the parent process.',
      'On this 2-core machine that gives the server under test one core and the load generator the other, so the',
      "load generator does not take the server's CPU (the CPU columns show each side's use; 100% = one core).",
      'Wegent is driven as a normal user (role `user`, created by the admin) with a Bearer JWT.',
      '',
      ...limitsAndTargets(limits, targets),
      '### HTTP load',
      '',
      markdownTable(load),
      '',
      '- *GET one Ghost*: `GET /api/v1/namespaces/default/ghosts/bench-ghost`.',
      '- *GET list of 100 Ghosts*: `GET /api/v1/namespaces/bench/ghosts?limit=100` (100 Ghosts in namespace `bench`).',
      '- *POST create a Ghost*: `POST /api/v1/namespaces/bench-create/ghosts` (JSON), a new name each request; the table grows during the run.',
      '- *server CPU per request*: CPU time (user + system, all threads) of the server process divided by the requests it',
      '  served. It depends less on other load than req/s does, so it is a cross-check of the Wegent/bare ratio on a busy machine.',
      '- *CPU columns*: share of one core over the measurement (server process, autocannon in the parent process, and',
      '  everything else on the machine from `os.cpus()`, including kernel network work billed to no process).',
      '- *response*: mean size of a Wegent response (headers and body); the bare server answers bodies of the same size.',
      `- ${contention}`,
      '',
      `### Apply ${fmt.int(APPLY_DOCUMENTS)} documents`,
      '',
      markdownTable(apply),
      '',
      `One YAML request (\`content-type: application/yaml\`) of ${mixture} (${fmt.bytes(applyBytes)}): every Bot references`,
      'a Ghost and a Shell of the same request, every Team one to three of its Bots. Wall time from sending the request',
      `to the whole answer received, each run into a fresh namespace (\`apply-1\` … \`apply-${applyRuns}\`); every run is`,
      `checked to answer HTTP 200 with ${fmt.int(APPLY_DOCUMENTS)} \`created\` results. Wegent server RSS at the end: ${fmt.bytes(wegentRss)}.`,
    ].join('\n');

    const partial = selected.size < ALL_SCENARIOS.length ? 'BENCH_SCENARIOS selects a subset' : profileDir ? 'BENCH_CPU_PROF slows the server down' : undefined;
    return { tables: [limitsTable, load, apply, targets], markdown, verdicts, doNotWrite: partial };
  } finally {
    await bare?.stop();
    await wegent?.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

export const benchmark: Benchmark = { id: 'api', title: 'HTTP API: Wegent vs bare Fastify', run };
