/**
 * Team benchmark: the real Wegent server (startServer, SQLite) in its own child process
 * (bench/lib/server-child.ts), the project's fake model server (@wegent/runtime/testing) and one
 * Socket.IO client in this process. Two scenarios, each a series of runs, one at a time, a new task each:
 *
 *   coordinate   a `coordinate` Team: a leader and 4 members whose Models (one per member) take a fixed
 *                time before answering (BENCH_TEAMS_DELAYS, default 300,500,700,900 ms: a leading delay
 *                step of the fake server). The leader's plan gives each member one sub-request; plan and
 *                aggregate answer at once. Target (runtime.md §9.4): the work step — the plan turn's
 *                `chat:done` → the last sub-request's `chat:done` — takes at most 1.1 × the slowest
 *                member's delay (p50 over the runs), not the sum of the delays.
 *   pipeline     `pipeline` Teams of 1 and N stages (BENCH_TEAMS_STAGES, default 8) whose Models answer at
 *                once. Per-stage overhead = (run time − model time) ÷ stages, run time being `chat:send`
 *                emitted → `task:status` COMPLETED received, model time the sum of the run's model
 *                exchanges as the fake server saw them (request received → answer written). Also the
 *                marginal cost of a stage, (overhead(N) − overhead(1)) ÷ (N − 1), which leaves out the
 *                run's fixed costs. No target: reported.
 *
 * Environment: BENCH_TEAMS_SCENARIOS (comma list of the ids above), BENCH_TEAMS_RUNS (runs per scenario
 * after 2 warm-up runs, default 10), BENCH_TEAMS_DELAYS, BENCH_TEAMS_STAGES. A run with
 * BENCH_TEAMS_SCENARIOS set prints its figures but leaves docs/benchmarks.md alone. Takes about 30 s.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { startFakeModelServer, type FakeModelServer, type FakeRecordedRequest } from '@wegent/runtime/testing';
import type { Benchmark, BenchmarkReport } from './lib/benchmark.js';
import { call, createUser, expectStatus, login } from './lib/http.js';
import { cpuWindow, envNumber, percentiles, selectedScenarios, type CpuShares } from './lib/measure.js';
import { fmt, machineLine, limitsAndTargets, markdownTable, type Table } from './lib/report.js';
import { ChildServer } from './lib/servers.js';

const ALL_SCENARIOS = ['coordinate', 'pipeline'] as const;
const TARGET_FACTOR = 1.1;
const WARMUP_RUNS = 2;
const RUN_TIMEOUT_MS = 60_000;
/** Above this share of a core used by other processes, the figures are marked disturbed. */
const NOISY_OTHER_CPU = 0.25;
const PLAN_MARK = "Split the user's request into sub-requests";

const now = (): number => performance.timeOrigin + performance.now();

function envList(name: string, fallback: number[]): number[] {
  const raw = process.env[name];
  if (!raw) return fallback;
  const values = raw.split(',').map((x) => Number(x.trim()));
  if (values.length < 2 || values.some((v) => !Number.isInteger(v) || v < 0)) throw new Error(`${name} must be at least two whole numbers of ms, comma-separated; got '${raw}'`);
  return values;
}

const workerName = (delay: number) => `W${delay}`;

function manifest(fake: FakeModelServer, delays: number[], stages: number[]): string {
  const docs: string[] = [];
  const model = (name: string) => `kind: Model
metadata: {name: ${name}}
spec: {protocol: openai-compatible, modelId: ${name}, baseUrl: "${fake.openaiBaseUrl}", apiKey: sk-bench-0123456789}`;
  const ghost = (name: string) => `kind: Ghost
metadata: {name: ${name}}
spec: {systemPrompt: You help., tools: []}`;
  const bot = (name: string, modelName: string, display: string) => `kind: Bot
metadata: {name: ${name}, displayName: ${display}}
spec: {ghostRef: {name: ${name}}, shellRef: {name: Chat}, modelRef: {name: ${modelName}}}`;
  docs.push(model('instant'), ghost('lead'), bot('lead', 'instant', 'Lead'));
  for (const d of delays) docs.push(model(`slow-${d}`), ghost(`w${d}`), bot(`w${d}`, `slow-${d}`, workerName(d)));
  docs.push(`kind: Team
metadata: {name: coordinate-bench}
spec:
  collaborationModel: coordinate
  collaborationOptions: {maxParallel: ${delays.length}}
  members:
    - {role: leader, botRef: {name: lead}}
${delays.map((d) => `    - {botRef: {name: w${d}}}`).join('\n')}`);
  const maxStages = Math.max(...stages);
  for (let i = 0; i < maxStages; i++) docs.push(ghost(`s${i}`), bot(`s${i}`, 'instant', `Stage ${i + 1}`));
  for (const n of stages) {
    docs.push(`kind: Team
metadata: {name: pipeline-${n}}
spec:
  collaborationModel: pipeline
  members:
${Array.from({ length: n }, (_, i) => `    - {botRef: {name: s${i}}}`).join('\n')}`);
  }
  return docs.join('\n---\n');
}

function scriptFake(fake: FakeModelServer, delays: number[]): void {
  const plan = JSON.stringify({ subRequests: delays.map((d) => ({ member: workerName(d), request: `Part ${d}.` })) });
  fake.script([
    { match: { model: 'instant', when: (r: FakeRecordedRequest) => (r.systemText ?? '').includes(PLAN_MARK) }, steps: [{ text: plan }], times: Infinity },
    ...delays.map((d) => ({ match: { model: `slow-${d}` }, steps: [{ delayMs: d }, { text: `Result ${d}.` }], times: Infinity })),
    { match: { model: 'instant' }, steps: [{ text: 'Done.' }], times: Infinity },
  ]);
}

async function connect(base: string, token: string): Promise<Socket> {
  const socket = io(`${base}/chat`, { path: '/socket.io', transports: ['websocket'], auth: { token }, forceNew: true, reconnection: false });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', (e: Error) => reject(new Error(`socket connect: ${e.message}`)));
  });
  return socket;
}

/** What the client saw of one run: event times on this process's clock. */
interface RunTrace {
  sentAt: number;
  doneAt: number;
  turns: Array<{ subtaskId: string; purpose: string; memberName: string; startAt: number; doneAt?: number }>;
  /** The fake model's exchanges during the run. */
  requests: FakeRecordedRequest[];
}

let messageSeq = 0;

/** Sends one message to `team` as a new task and waits for its terminal `task:status`. */
async function runOnce(socket: Socket, fake: FakeModelServer, team: string): Promise<RunTrace> {
  const from = fake.requests.length;
  const turns: RunTrace['turns'] = [];
  let taskId: string | undefined;
  const early: Array<[string, Record<string, unknown>, number]> = [];
  return new Promise<RunTrace>((resolve, reject) => {
    const onAny = (name: string, payload: Record<string, unknown>) => {
      const at = now();
      if (!taskId) {
        early.push([name, payload, at]);
        return;
      }
      handle(name, payload, at);
    };
    let sentAt = 0;
    const timer = setTimeout(() => finish(new Error(`${team}: no terminal task:status within ${RUN_TIMEOUT_MS / 1000} s`)), RUN_TIMEOUT_MS);
    const finish = (error?: Error, doneAt?: number) => {
      clearTimeout(timer);
      socket.offAny(onAny);
      if (error) reject(error);
      else resolve({ sentAt, doneAt: doneAt!, turns, requests: fake.requests.slice(from) });
    };
    const handle = (name: string, p: Record<string, unknown>, at: number) => {
      if (p.taskId !== taskId) return;
      if (name === 'chat:start') turns.push({ subtaskId: String(p.subtaskId), purpose: String(p.purpose), memberName: String(p.memberName), startAt: at });
      else if (name === 'chat:done') {
        const t = turns.find((x) => x.subtaskId === p.subtaskId);
        if (t) t.doneAt = at;
      } else if (name === 'task:status' && ['COMPLETED', 'FAILED', 'CANCELLED'].includes(String(p.status))) {
        if (p.status === 'COMPLETED') finish(undefined, at);
        else finish(new Error(`${team}: the run ended ${String(p.status)}: ${JSON.stringify(p)}`));
      }
    };
    socket.onAny(onAny);
    sentAt = now();
    socket
      .timeout(10_000)
      .emitWithAck('chat:send', { clientMessageId: `bt${process.pid.toString(36)}-${messageSeq++}`, team, message: `Benchmark request ${messageSeq}.` })
      .then((ack: { ok?: boolean; taskId?: string; error?: unknown }) => {
        if (ack.ok === false || !ack.taskId) return finish(new Error(`${team}: chat:send refused: ${JSON.stringify(ack)}`));
        taskId = ack.taskId;
        for (const [name, payload, at] of early.splice(0)) handle(name, payload, at);
      })
      .catch((e: Error) => finish(e));
  });
}

interface CoordinateSample {
  total: number;
  plan: number;
  work: number;
  aggregate: number;
  /** Per member (by delay): its sub-request turn, chat:start → chat:done. */
  memberTurns: Map<number, number>;
  /** Spread of the sub-requests' chat:start times. */
  startSpread: number;
}

function coordinateSample(trace: RunTrace, delays: number[]): CoordinateSample {
  const plan = trace.turns.find((t) => t.purpose === 'plan');
  const subs = trace.turns.filter((t) => t.purpose === 'subrequest');
  const aggregate = trace.turns.find((t) => t.purpose === 'aggregate');
  if (!plan?.doneAt || subs.length !== delays.length || subs.some((s) => !s.doneAt) || !aggregate?.doneAt) {
    throw new Error(`coordinate: unexpected turns ${JSON.stringify(trace.turns.map((t) => [t.purpose, t.memberName, Boolean(t.doneAt)]))}`);
  }
  const lastSub = Math.max(...subs.map((s) => s.doneAt!));
  const memberTurns = new Map<number, number>();
  for (const d of delays) {
    const s = subs.find((x) => x.memberName === workerName(d));
    if (s) memberTurns.set(d, s.doneAt! - s.startAt);
  }
  const starts = subs.map((s) => s.startAt);
  return { total: trace.doneAt - trace.sentAt, plan: plan.doneAt - trace.sentAt, work: lastSub - plan.doneAt, aggregate: trace.doneAt - lastSub, memberTurns, startSpread: Math.max(...starts) - Math.min(...starts) };
}

interface PipelineSample {
  total: number;
  model: number;
  calls: number;
}

function pipelineSample(trace: RunTrace, stages: number): PipelineSample {
  const exchanges = trace.requests.filter((r) => r.protocol === 'openai-chat');
  if (exchanges.length !== stages || exchanges.some((r) => r.endedAt === undefined)) throw new Error(`pipeline-${stages}: expected ${stages} finished model calls, saw ${exchanges.length}`);
  const model = exchanges.reduce((sum, r) => sum + (r.endedAt! - r.at), 0);
  return { total: trace.doneAt - trace.sentAt, model, calls: exchanges.length };
}

const median = (values: number[]) => percentiles(values, [0.5])[0]!;
const max = (values: number[]) => values.reduce((a, b) => Math.max(a, b), 0);

async function run(context: { machine: import('./lib/report.js').Machine; log: (m: string) => void }): Promise<BenchmarkReport> {
  const { log, machine } = context;
  const selected = selectedScenarios('BENCH_TEAMS_SCENARIOS', ALL_SCENARIOS);
  const runs = envNumber('BENCH_TEAMS_RUNS', 10, 1);
  const delays = envList('BENCH_TEAMS_DELAYS', [300, 500, 700, 900]);
  const stages = envNumber('BENCH_TEAMS_STAGES', 8, 2);
  const started = Date.now();
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'wegent-bench-teams-'));
  const adminPassword = `Adm1n-${randomBytes(9).toString('base64url')}`;
  const overrides = {
    port: 0,
    host: '127.0.0.1',
    dataDir: tmp,
    databaseUrl: `sqlite:${path.join(tmp, 'wegent.db')}`,
    rate: { login: 0, default: 0, send: 0, aiCreate: 0 },
    privateHostsAllow: ['127.0.0.1'],
  };
  const limits = [
    'rate limits: off (`rate: {login: 0, default: 0, send: 0, aiCreate: 0}`, i.e. WEGENT_RATE_LOGIN/DEFAULT/SEND/AI_CREATE = 0); one run at a time, so per-user and worker caps stay at their defaults',
    'private hosts: `privateHostsAllow: [127.0.0.1]` (WEGENT_PRIVATE_HOSTS_ALLOW=127.0.0.1) so that the Models may point at the loopback fake model server',
    'database: SQLite file in a fresh temporary directory; logger: pino level silent; runtime threads: the default (cores − 1)',
    `model: the fake model server (@wegent/runtime/testing) on 127.0.0.1 in the benchmark process, OpenAI chat completions (\`protocol: openai-compatible\`), streaming`,
    `coordinate: a leader and ${delays.length} members, one Model per member answering after ${delays.map((d) => `${d}`).join(' / ')} ms (a leading delay step), \`maxParallel: ${delays.length}\`; plan and aggregate answer at once; Ghosts without tools`,
    `pipeline: Teams of 1 and ${stages} stages (contextPassing none, no confirmations), every Model answering at once; Ghosts without tools`,
    `runs: ${WARMUP_RUNS} warm-up runs, then ${runs} measured runs per scenario (a new task each, one at a time)`,
  ];
  log(`limits: ${limits.join('; ')}`);

  const fake = await startFakeModelServer();
  let wegent: ChildServer | undefined;
  let socket: Socket | undefined;
  const coordinate: CoordinateSample[] = [];
  const pipelines = new Map<number, PipelineSample[]>();
  let cpu: { coordinate?: CpuShares; pipeline?: CpuShares } = {};
  try {
    log('starting Wegent (child process)…');
    wegent = await ChildServer.start({ kind: 'wegent', overrides, env: { WEGENT_ADMIN_PASSWORD: adminPassword } });
    const W = wegent.url;
    const adminToken = await login(W, 'admin', adminPassword);
    const user = await createUser(W, adminToken, 'bench-teams', `Pw-${randomBytes(9).toString('base64url')}1a`);
    await expectStatus('apply the Models, Ghosts, Bots and Teams', call(W, 'POST', '/api/v1/apply', { token: user.token, yaml: manifest(fake, delays, [1, stages]) }), 200);
    scriptFake(fake, delays);
    socket = await connect(W, user.token);

    if (selected.has('coordinate')) {
      log(`coordinate: ${WARMUP_RUNS} warm-up + ${runs} runs…`);
      for (let i = 0; i < WARMUP_RUNS; i++) coordinateSample(await runOnce(socket, fake, 'coordinate-bench'), delays);
      const window = await cpuWindow(wegent);
      for (let i = 0; i < runs; i++) coordinate.push(coordinateSample(await runOnce(socket, fake, 'coordinate-bench'), delays));
      cpu = { ...cpu, coordinate: await window.stop() };
    }
    if (selected.has('pipeline')) {
      log(`pipeline: ${WARMUP_RUNS} warm-up + ${runs} runs each of 1 and ${stages} stages…`);
      for (const n of [1, stages]) for (let i = 0; i < WARMUP_RUNS; i++) pipelineSample(await runOnce(socket, fake, `pipeline-${n}`), n);
      const window = await cpuWindow(wegent);
      // Interleaved, so that drift on the machine touches both alike.
      for (let i = 0; i < runs; i++) {
        for (const n of [1, stages]) {
          const list = pipelines.get(n) ?? [];
          list.push(pipelineSample(await runOnce(socket, fake, `pipeline-${n}`), n));
          pipelines.set(n, list);
        }
      }
      cpu = { ...cpu, pipeline: await window.stop() };
    }
  } finally {
    socket?.disconnect();
    await wegent?.stop();
    await fake.close();
    rmSync(tmp, { recursive: true, force: true });
  }

  const pass = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
  const targetRows: string[][] = [];
  const slowest = Math.max(...delays);
  const sum = delays.reduce((a, b) => a + b, 0);
  const coordinateTable: Table = { title: `coordinate: leader + ${delays.length} members (${runs} runs)`, columns: ['Measure', 'p50', 'max'], right: [1, 2], rows: [] };
  const workTarget = `coordinate work step ≤ ${TARGET_FACTOR} × the slowest member (${slowest} ms → ≤ ${fmt.ms(TARGET_FACTOR * slowest)}), p50`;
  if (coordinate.length) {
    const col = (values: number[]) => [fmt.ms(median(values)), fmt.ms(max(values))];
    const work = coordinate.map((s) => s.work);
    coordinateTable.rows.push(
      ['**work step**: plan turn `chat:done` → last sub-request `chat:done`', ...col(work)],
      ['slowest member: its Model\'s delay', fmt.ms(slowest), fmt.ms(slowest)],
      ['sum of the members\' delays (what running them one after another would take at least)', fmt.ms(sum), fmt.ms(sum)],
      ['work step ÷ slowest member', `${(median(work) / slowest).toFixed(3)}×`, `${(max(work) / slowest).toFixed(3)}×`],
      ['**whole run**: `chat:send` emitted → `task:status` COMPLETED', ...col(coordinate.map((s) => s.total))],
      ['plan step: `chat:send` emitted → plan turn `chat:done`', ...col(coordinate.map((s) => s.plan))],
      ['aggregate step: last sub-request `chat:done` → `task:status` COMPLETED', ...col(coordinate.map((s) => s.aggregate))],
      ['whole run ÷ slowest member (plan and aggregate included)', `${(median(coordinate.map((s) => s.total)) / slowest).toFixed(3)}×`, `${(max(coordinate.map((s) => s.total)) / slowest).toFixed(3)}×`],
      ['spread of the sub-requests\' `chat:start` as the client received them', ...col(coordinate.map((s) => s.startSpread))],
      ...delays.map((d) => [`member ${workerName(d)} (delay ${d} ms): its turn, \`chat:start\` → \`chat:done\``, ...col(coordinate.map((s) => s.memberTurns.get(d) ?? Number.NaN))]),
    );
    targetRows.push([workTarget, `${fmt.ms(median(work))} = ${(median(work) / slowest).toFixed(3)}× (max ${fmt.ms(max(work))}); sum of delays ${fmt.ms(sum)}`, pass(median(work) <= TARGET_FACTOR * slowest)]);
  } else targetRows.push([workTarget, 'not run', '—']);

  const pipelineTable: Table = { title: `pipeline: instant Models (${runs} runs each)`, columns: ['Team', 'run time p50', 'model time p50', 'overhead p50', 'overhead per stage p50', 'max'], right: [1, 2, 3, 4, 5], rows: [] };
  let marginal: number | undefined;
  const one = pipelines.get(1);
  const many = pipelines.get(stages);
  if (one && many) {
    for (const [n, list] of [[1, one], [stages, many]] as const) {
      const perStage = list.map((s) => (s.total - s.model) / n);
      pipelineTable.rows.push([`${n} stage${n === 1 ? '' : 's'}`, fmt.ms(median(list.map((s) => s.total))), fmt.ms(median(list.map((s) => s.model))), fmt.ms(median(list.map((s) => s.total - s.model))), fmt.ms(median(perStage)), fmt.ms(max(perStage))]);
    }
    marginal = (median(many.map((s) => s.total - s.model)) - median(one.map((s) => s.total - s.model))) / (stages - 1);
    pipelineTable.rows.push([`marginal cost of a stage: (overhead(${stages}) − overhead(1)) ÷ ${stages - 1}`, '', '', '', fmt.ms(marginal), '']);
  }

  const targets: Table = { title: 'Targets', columns: ['Target', 'Measured', 'Result'], rows: targetRows };
  const verdicts = targetRows.map((t) => `${t[2]}  ${t[0]} — ${t[1]}`);
  if (one && many) verdicts.push(`INFO  pipeline overhead per stage (${stages} stages): ${fmt.ms(median(many.map((s) => (s.total - s.model) / stages)))} p50; marginal ${fmt.ms(marginal!)} per stage (no target)`);
  const busiest = Math.max(cpu.coordinate?.other ?? 0, cpu.pipeline?.other ?? 0);
  if (busiest > NOISY_OTHER_CPU) verdicts.push(`NOTE  other processes used up to ${fmt.pct(busiest)} of a core during the measurements: figures disturbed`);
  const contention =
    busiest > NOISY_OTHER_CPU
      ? `**Caution:** other processes on the machine used up to ${fmt.pct(busiest)} of a core during the measurements (which also counts the kernel's loopback network work); the figures are disturbed. Rerun on an idle machine for clean numbers.`
      : `Other processes used at most ${fmt.pct(busiest)} of a core during the measurements.`;
  const cpuLine = (label: string, c: CpuShares | undefined) =>
    c ? `During the measured ${label} runs the server used ${fmt.pct(c.server)} of a core, the benchmark process ${fmt.pct(c.self)}, other processes ${fmt.pct(c.other)}.` : '';

  const markdown = [
    '## Teams (`bench/teams.ts`)',
    '',
    `Run ${new Date(started).toISOString().replace(/\.\d+Z$/, 'Z')} on ${machineLine(machine)}; took ${Math.round((Date.now() - started) / 1000)} s.`,
    '',
    'The real Wegent server (`startServer`, SQLite) runs in its **own child process**; the fake model server',
    '(`startFakeModelServer` from `@wegent/runtime/testing`) and one Socket.IO client (`/chat`, websocket) run in',
    'the benchmark process. One user applies the Models, Ghosts, Bots and Teams and sends each run as a new task',
    '(`chat:send {team}`), one run at a time; times are taken by the client when it receives the events.',
    '',
    ...limitsAndTargets(limits, targets),
    contention,
    '',
    '### Coordinate: parallel members',
    '',
    coordinate.length ? markdownTable(coordinateTable) : '_not run_',
    '',
    `- *What is compared*: runtime.md §9.4 runs the sub-requests in parallel, so the **work step** should take about`,
    `  the slowest member's time, not the sum. The work step is measured from the plan turn's \`chat:done\` (the plan is`,
    `  known) to the last sub-request turn's \`chat:done\`; it includes creating the ${delays.length} turns, their model calls`,
    `  (each Model answers after its fixed delay) and recording them. It is compared with the slowest Model's delay`,
    `  (${slowest} ms) — the target is ≤ ${TARGET_FACTOR} × that, at p50 — and with the sum of the delays (${sum} ms). The plan`,
    '  and aggregate calls are instant fake answers and are shown as their own steps; the whole run is plan step +',
    '  work step + aggregate step.',
    `- ${cpuLine('coordinate', cpu.coordinate)}`,
    '',
    '### Pipeline: overhead per stage',
    '',
    one && many ? markdownTable(pipelineTable) : '_not run_',
    '',
    '- *run time*: `chat:send` emitted → `task:status` COMPLETED received. *model time*: the sum, over the run\'s model',
    '  calls, of the fake server\'s exchange time (request received → last byte of the answer written). *overhead*: run',
    '  time − model time: sending, queueing, resolution, each stage\'s turn (record, prompt, stream, completion) and the',
    '  events to the client. *overhead per stage*: overhead ÷ stages, as asked; it still carries the run\'s fixed costs,',
    '  which the *marginal cost of a stage* leaves out (the difference between the two Teams ÷ the extra stages).',
    '  No target is set for it.',
    `- ${cpuLine('pipeline', cpu.pipeline)}`,
  ].join('\n');

  const partial = selected.size < ALL_SCENARIOS.length ? 'BENCH_TEAMS_SCENARIOS selects a subset' : undefined;
  return { tables: [coordinateTable, pipelineTable, targets], markdown, verdicts, doNotWrite: partial };
}

export const benchmark: Benchmark = { id: 'teams', title: 'Teams: parallel coordinate members and pipeline stage overhead', run };
