/**
 * Streaming benchmark: the real Wegent server (startServer, SQLite) in its own child process
 * (bench/lib/server-child.ts), the project's fake model server (@wegent/runtime/testing) and the
 * Socket.IO clients in this process. Three scenarios:
 *
 *   ttft          Time to first token added by Wegent (DESIGN.md §2), one stream at a time: p50/p90/p99 of
 *                 (`chat:send` emitted → first `chat:chunk` received, a new task each sample) minus the same
 *                 percentile of (request sent straight to the same fake model → first content delta
 *                 received), the two kinds of sample interleaved in one run after a warm-up.
 *   streams-200   200 concurrent streams held for a fixed time (each client starts a new task as soon as its
 *   streams-1000  previous one is done); chunk latency = fake model writes a chunk → the client receives the
 *                 `chat:chunk` carrying it, and chunks/s delivered. Answers of BENCH_STREAM_CHUNKS chunks.
 *   churn-200     the same with 200 streams and short answers (BENCH_STREAM_CHURN_CHUNKS): a new task per
 *                 client every second, which adds the cost of starting runs to the streaming; no target.
 *   floor         the parts of streams-200 that are not Wegent's, each alone at the same load (200 streams of
 *                 the same answers): CPU per chunk of the fake model server writing them, of the AI SDK provider
 *                 reading them (the model Wegent builds, with its fetch; and, beside it, node:http with a bare
 *                 SSE split and JSON.parse), and of a bare Socket.IO server sending a `chat:chunk` per chunk to
 *                 200 websocket clients and of those clients. Their sum is the machine's CPU that streams-200 needs
 *                 before Wegent does anything of its own.
 *
 * Environment: BENCH_STREAM_SCENARIOS (comma-separated subset of the ids above), BENCH_STREAM_TTFT_SAMPLES
 * (per side, default 200), BENCH_STREAM_TTFT_WARMUP (pairs, default 30), BENCH_STREAM_DURATION (seconds
 * measured per load scenario, default 10), BENCH_STREAM_WARMUP (seconds of load before measuring, default one
 * answer length + 2 s, at least 3), BENCH_STREAM_CHUNKS (chunks per answer, default 500: a 10 s answer of 500
 * tokens at 50 tokens/s), BENCH_STREAM_CHURN_CHUNKS (default 50), BENCH_STREAM_CHUNK_MS (ms between chunks, default 20),
 * BENCH_CPU_PROF (a directory: a V8 CPU profile of the Wegent server during each measurement is written
 * there, e.g. wegent-streams-200.cpuprofile; summarise with `node --import tsx bench/lib/profile-top.ts <file>`).
 * A run with BENCH_STREAM_SCENARIOS or BENCH_CPU_PROF prints its figures but leaves docs/benchmarks.md alone.
 *
 * Every client is its own user (1,001 users are created: argon2 hashing makes that about 10 s); the whole
 * benchmark takes about a minute on an idle 2-core machine, longer when the server falls behind at 1,000
 * streams (in-flight streams are waited for).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { io as ioClient, type Socket } from 'socket.io-client';
import http from 'node:http';
// The SSE parser the AI SDK itself uses inside Wegent (a dependency of @ai-sdk/provider-utils).
import { EventSourceParserStream } from 'eventsource-parser/stream';
import { startFakeModelServer, type FakeModelServer, type FakeStep } from '@wegent/runtime/testing';
import { createLanguageModel, createPinnedFetch, modelAddressPolicy, type ModelConnection } from '@wegent/runtime';
import type { Benchmark, BenchmarkReport } from './lib/benchmark.js';
import { call, createUser, expectStatus, login } from './lib/http.js';
import { cpuWindow, envNumber, percentiles, selectedScenarios, type CpuShares } from './lib/measure.js';
import { fmt, machineLine, limitsAndTargets, markdownTable, type Table } from './lib/report.js';
import { ChildServer } from './lib/servers.js';

const ALL_SCENARIOS = ['ttft', 'streams-200', 'streams-1000', 'churn-200', 'floor'] as const;
type ScenarioId = (typeof ALL_SCENARIOS)[number];
type LoadId = Exclude<ScenarioId, 'ttft' | 'floor'>;
const LOAD_IDS: readonly LoadId[] = ['streams-200', 'streams-1000', 'churn-200'];
const LOAD_STREAMS: Record<LoadId, number> = { 'streams-200': 200, 'streams-1000': 1000, 'churn-200': 200 };

const TARGET_ADDED_TTFT_MS = 10;
const TARGET_CHUNK_P99_MS = 50;
const TARGET_CHUNK_STREAMS = 200;

/**
 * Sockets (and so concurrent streams) per user: one, like a user with one browser tab. With more, every
 * user-room event (`task:created`, `task:status`) would be sent to every socket of the user, which would
 * multiply the writes per stream beyond what the server does for real users.
 */
const SOCKETS_PER_USER = 1;
const SOCKET_MAX_PER_USER = 20;
const MAX_RUNNING_PER_USER = 2000;
const WORKER_CONCURRENCY = 2000;
/** A stream that has not ended this long after its chat:send is counted as timed out (and its client stops). */
const STREAM_TIMEOUT_MS = 120_000;
/** Above this share of a core used by this process, the clients may be what delays chunks. */
const CLIENT_SATURATED = 0.9;
const NOISY_OTHER_CPU = 0.25;
const CHUNK_CHARS = 24;

const TTFT_PROMPT = 'ttft-probe';
const LOAD_PROMPT = 'stream-load';
const TTFT_REPLY = ['Hello', ', world.'];

/**
 * Wall-clock milliseconds with sub-millisecond resolution, comparable across threads and processes on
 * this machine (performance.timeOrigin is the process start on the system clock).
 */
const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** One chunk of a load answer: its text is the time it is being written, `t=<ms>;`, padded to CHUNK_CHARS. */
function stampedStep(): FakeStep {
  // The fake server reads `text` just before it encodes and writes the chunk (after the preceding delay
  // step), so the stamp is the write time to within microseconds.
  return {
    get text(): string {
      return `t=${now().toFixed(3)};`.padEnd(CHUNK_CHARS, '.');
    },
  };
}
const STAMP = /t=(\d+\.\d+);/g;

function scriptFake(fake: FakeModelServer, chunks: number, chunkMs: number): void {
  const load: FakeStep[] = [];
  for (let i = 0; i < chunks; i++) load.push({ delayMs: chunkMs }, stampedStep());
  fake.script([
    { match: { lastUserText: TTFT_PROMPT }, steps: TTFT_REPLY.map((text) => ({ text })), times: Infinity },
    { match: { lastUserText: LOAD_PROMPT }, steps: load, times: Infinity },
  ]);
}

function manifest(fake: FakeModelServer): string {
  return `apiVersion: agent.wecode.io/v1
kind: Model
metadata: {name: m}
spec: {protocol: openai-compatible, modelId: m, baseUrl: "${fake.openaiBaseUrl}"}
---
apiVersion: agent.wecode.io/v1
kind: Ghost
metadata: {name: g}
spec: {systemPrompt: hi, tools: []}
---
apiVersion: agent.wecode.io/v1
kind: Bot
metadata: {name: b}
spec: {ghostRef: {name: g}, shellRef: {name: Chat}, modelRef: {name: m}}
---
apiVersion: agent.wecode.io/v1
kind: Team
metadata: {name: t}
spec: {members: [{botRef: {name: b}}]}
`;
}

async function connect(base: string, token: string): Promise<Socket> {
  const socket = ioClient(`${base}/chat`, { path: '/socket.io', transports: ['websocket'], auth: { token }, forceNew: true, reconnection: false });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', (e: Error & { data?: unknown }) => reject(new Error(`socket connect: ${e.message} ${JSON.stringify(e.data ?? '')}`)));
  });
  return socket;
}

/** Runs `work` over `items` with at most `limit` at once. */
async function pool<T, R>(items: readonly T[], limit: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await work(items[i]!, i);
      }
    }),
  );
  return out;
}

let messageSeq = 0;
const clientMessageId = () => `b${process.pid.toString(36)}-${(messageSeq++).toString(36)}`;

type Ack = { ok: true; taskId: string; subtaskId: string } | { ok: false; error: { code: string; message: string } };

// ---------------------------------------------------------------------------------------------- ttft

interface WegentSample {
  firstChunkMs: number;
  ackMs: number;
  startMs: number;
}

/** One Wegent sample: a new task; resolves once the task's status is terminal (so streams never overlap). */
function wegentSample(socket: Socket): Promise<WegentSample> {
  return new Promise((resolve, reject) => {
    let taskId: string | undefined;
    let firstChunkTask: string | undefined;
    let firstChunkAt: number | undefined;
    let ackAt: number | undefined;
    let startAt: number | undefined;
    let ended = false;
    const t0 = now();
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('chat:chunk', onChunk);
      socket.off('chat:start', onStart);
      socket.off('chat:error', onError);
      socket.off('task:status', onStatus);
    };
    const fail = (message: string) => {
      cleanup();
      reject(new Error(message));
    };
    const settle = () => {
      if (!ended || taskId === undefined) return;
      cleanup();
      if (firstChunkAt === undefined || ackAt === undefined || startAt === undefined) return fail(`task ${taskId} ended without chat:start or chat:chunk`);
      if (firstChunkTask !== taskId) return fail(`first chat:chunk belonged to task ${firstChunkTask}, not ${taskId}`);
      resolve({ firstChunkMs: firstChunkAt - t0, ackMs: ackAt - t0, startMs: startAt - t0 });
    };
    const onChunk = (p: { taskId: string }) => {
      if (firstChunkAt !== undefined) return;
      firstChunkAt = now();
      firstChunkTask = p.taskId;
    };
    const onStart = () => {
      startAt ??= now();
    };
    const onError = (p: { code: string; message: string }) => fail(`chat:error ${p.code}: ${p.message}`);
    const onStatus = (p: { taskId: string; status: string }) => {
      if (p.taskId !== taskId) return;
      if (p.status === 'COMPLETED') {
        ended = true;
        settle();
      } else if (p.status === 'FAILED' || p.status === 'CANCELLED') fail(`task ${taskId} ended ${p.status}`);
    };
    const timer = setTimeout(() => fail('no terminal task:status within 30 s'), 30_000);
    socket.on('chat:chunk', onChunk);
    socket.on('chat:start', onStart);
    socket.on('chat:error', onError);
    socket.on('task:status', onStatus);
    socket.emit('chat:send', { clientMessageId: clientMessageId(), team: 't', message: TTFT_PROMPT }, (ack: Ack) => {
      ackAt = now();
      if (!ack.ok) return fail(`chat:send refused: ${ack.error.code} ${ack.error.message}`);
      taskId = ack.taskId;
      settle();
    });
  });
}

/** One direct sample: the same fake model over HTTP, SSE parsed as the AI SDK does; ms to the first content delta. */
async function directSample(fake: FakeModelServer): Promise<number> {
  const t0 = now();
  const res = await fetch(`${fake.openaiBaseUrl}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer sk-bench' },
    body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'system', content: 'hi' }, { role: 'user', content: TTFT_PROMPT }] }),
  });
  if (!res.ok || !res.body) throw new Error(`direct request to the fake model: HTTP ${res.status}: ${await res.text()}`);
  let first: number | undefined;
  // Read to the end, so that the connection goes back to the keep-alive pool as Wegent's does.
  for await (const event of res.body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream())) {
    if (first !== undefined || event.data === '[DONE]') continue;
    const delta = (JSON.parse(event.data) as { choices?: Array<{ delta?: { content?: string | null } }> }).choices?.[0]?.delta?.content;
    if (delta) first = now();
  }
  if (first === undefined) throw new Error('direct request to the fake model: no content delta');
  return first - t0;
}

interface TtftFigures {
  wegent: WegentSample[];
  direct: number[];
  cpu: CpuShares;
}

async function runTtft(W: string, token: string, fake: FakeModelServer, server: ChildServer, samples: number, warmup: number, profileFile: string | undefined, log: (m: string) => void): Promise<TtftFigures> {
  const socket = await connect(W, token);
  try {
    const wegent: WegentSample[] = [];
    const direct: number[] = [];
    let cpu: { stop(): Promise<CpuShares> } | undefined;
    for (let i = 0; i < warmup + samples; i++) {
      if (i === warmup) {
        log(`ttft: ${warmup} warm-up pairs done; measuring ${samples} pairs…`);
        if (profileFile) await server.profileStart();
        cpu = await cpuWindow(server);
      }
      // Interleaved, alternating which side goes first.
      const pair: Array<() => Promise<void>> = [
        async () => {
          const w = await wegentSample(socket);
          if (i >= warmup) wegent.push(w);
        },
        async () => {
          const d = await directSample(fake);
          if (i >= warmup) direct.push(d);
        },
      ];
      if (i % 2) pair.reverse();
      for (const step of pair) await step();
    }
    const shares = await cpu!.stop();
    if (profileFile) {
      await server.profileStop(profileFile);
      log(`CPU profile of Wegent during the ttft samples: ${profileFile}`);
    }
    return { wegent, direct, cpu: shares };
  } finally {
    socket.disconnect();
  }
}

// --------------------------------------------------------------------------------------------- load

interface LoadSink {
  windowStart: number;
  windowEnd: number;
  chunks: number;
  /** Chunk latencies (ms) of chunks the fake model wrote inside the window. */
  latencies: number[];
  /** Chunks received inside the window. */
  receivedInWindow: number;
  /** chat:send → first chat:chunk of streams sent inside the window. */
  ttft: number[];
  /** first chat:chunk → chat:done of streams that started inside the window. */
  streamMs: number[];
  streamsDone: number;
  streamsDoneInWindow: number;
  missingChunks: number;
  strayEvents: number;
  problems: Map<string, number>;
}

const problem = (sink: LoadSink, what: string) => sink.problems.set(what, (sink.problems.get(what) ?? 0) + 1);

interface Current {
  sentAt: number;
  firstChunkAt?: number;
  pending: string;
  stamps: number;
  finish(outcome: string | undefined): void;
}

/** One socket that runs one stream after another until told to stop. */
class LoadClient {
  current: Current | undefined;
  broken = false;

  constructor(
    readonly socket: Socket,
    private readonly sink: LoadSink,
  ) {
    socket.on('chat:chunk', (p: { text: string }) => this.onChunk(p.text));
    socket.on('chat:done', () => this.current ? this.current.finish(undefined) : sink.strayEvents++);
    socket.on('chat:error', (p: { code: string }) => this.current?.finish(`chat:error ${p.code}`));
    socket.on('chat:cancelled', (p: { reason: string }) => this.current?.finish(`chat:cancelled ${p.reason}`));
    socket.on('disconnect', (reason: string) => {
      if (reason === 'io client disconnect') return; // the benchmark closing it at the end
      problem(sink, `socket disconnected (${reason})`);
      this.current?.finish('disconnected');
      this.broken = true;
    });
  }

  private onChunk(text: string): void {
    const received = now();
    const s = this.current;
    if (!s) {
      this.sink.strayEvents++;
      return;
    }
    s.firstChunkAt ??= received;
    s.pending += text;
    let end = 0;
    for (const m of s.pending.matchAll(STAMP)) {
      const written = Number(m[1]);
      s.stamps++;
      if (written >= this.sink.windowStart && written < this.sink.windowEnd) this.sink.latencies.push(received - written);
      if (received >= this.sink.windowStart && received < this.sink.windowEnd) this.sink.receivedInWindow++;
      end = m.index + m[0].length;
    }
    if (end) s.pending = s.pending.slice(end);
  }

  /** One stream: a new task; resolves when it ends (done, error, refusal, timeout or disconnect). */
  one(): Promise<void> {
    return new Promise((resolve) => {
      const sink = this.sink;
      const s: Current = {
        sentAt: now(),
        pending: '',
        stamps: 0,
        finish: (outcome) => {
          if (this.current !== s) return;
          clearTimeout(timer);
          this.current = undefined;
          const endedAt = now();
          const inWindow = (t: number) => t >= sink.windowStart && t < sink.windowEnd;
          if (outcome) {
            problem(sink, outcome);
            if (outcome === 'timeout') this.broken = true;
          } else {
            sink.streamsDone++;
            if (inWindow(endedAt)) sink.streamsDoneInWindow++;
            if (s.stamps !== sink.chunks) {
              sink.missingChunks += sink.chunks - s.stamps;
              problem(sink, 'stream ended with a chunk count other than scripted');
            }
          }
          if (s.firstChunkAt !== undefined) {
            if (inWindow(s.sentAt)) sink.ttft.push(s.firstChunkAt - s.sentAt);
            if (!outcome && inWindow(s.firstChunkAt)) sink.streamMs.push(endedAt - s.firstChunkAt);
          }
          resolve();
        },
      };
      const timer = setTimeout(() => s.finish('timeout'), STREAM_TIMEOUT_MS);
      this.current = s;
      this.socket.emit('chat:send', { clientMessageId: clientMessageId(), team: 't', message: LOAD_PROMPT }, (ack: Ack) => {
        if (!ack.ok) s.finish(`chat:send refused: ${ack.error.code}`);
      });
    });
  }
}

interface LoadFigures {
  label: string;
  streams: number;
  /** Chunks per answer. */
  chunks: number;
  users: number;
  sink: LoadSink;
  cpu: CpuShares;
  streamingMean: number;
  streamingMin: number;
  serverRss: number;
  /** Round trips of IPC usage requests to the server during the window (ms): its event-loop delay. */
  lags: number[];
  offeredPerSecond: number;
}

async function runLoad(
  W: string,
  tokens: string[],
  server: ChildServer,
  o: { streams: number; chunks: number; chunkMs: number; warmupS: number; durationS: number; profileFile?: string; label: string },
  log: (m: string) => void,
): Promise<LoadFigures> {
  const users = Math.ceil(o.streams / SOCKETS_PER_USER);
  const sink: LoadSink = { windowStart: Infinity, windowEnd: Infinity, chunks: o.chunks, latencies: [], receivedInWindow: 0, ttft: [], streamMs: [], streamsDone: 0, streamsDoneInWindow: 0, missingChunks: 0, strayEvents: 0, problems: new Map() };
  log(`${o.label}: connecting ${o.streams} sockets (${users} users × ${SOCKETS_PER_USER})…`);
  const sockets = await pool(
    Array.from({ length: o.streams }, (_, i) => tokens[Math.floor(i / SOCKETS_PER_USER)]!),
    50,
    (token) => connect(W, token),
  );
  const clients = sockets.map((s) => new LoadClient(s, sink));
  try {
    const streamMs = o.chunks * o.chunkMs;
    const t0 = now();
    sink.windowStart = t0 + o.warmupS * 1000;
    sink.windowEnd = sink.windowStart + o.durationS * 1000;
    let stop = false;
    // Starts spread over one answer's length, so that streams do not run in lockstep.
    const loops = clients.map(async (c, i) => {
      await sleep((i / clients.length) * streamMs);
      while (!stop && !c.broken) await c.one();
    });
    log(`${o.label}: ${o.warmupS} s warm-up, then ${o.durationS} s measured…`);
    await sleep(Math.max(0, sink.windowStart - now()));
    if (o.profileFile) await server.profileStart();
    let streamingSum = 0;
    let streamingMin = Infinity;
    let ticks = 0;
    // The server's answer time to a usage request over IPC, every 250 ms: its event-loop delay.
    const lags: number[] = [];
    let probing = true;
    const probe = (async () => {
      while (probing) {
        const asked = now();
        await server.usage();
        lags.push(now() - asked);
        await sleep(250);
      }
    })();
    const sampler = setInterval(() => {
      let streaming = 0;
      for (const c of clients) if (c.current?.firstChunkAt !== undefined) streaming++;
      streamingSum += streaming;
      streamingMin = Math.min(streamingMin, streaming);
      ticks++;
    }, 100);
    // Started after the sampler and the probe: an overloaded server answers this reading seconds late.
    const cpu = await cpuWindow(server);
    await sleep(Math.max(0, sink.windowEnd - now()));
    stop = true; // no new streams after the window
    clearInterval(sampler);
    probing = false;
    const shares = await cpu.stop();
    await probe;
    if (o.profileFile) {
      await server.profileStop(o.profileFile);
      log(`CPU profile of Wegent during ${o.label}: ${o.profileFile}`);
    }
    log(`${o.label}: measured; letting the streams in flight finish…`);
    await Promise.all(loops);
    log(`${o.label}: all streams ended`);
    const serverRss = (await server.usage()).rss;
    return {
      label: o.label,
      streams: o.streams,
      chunks: o.chunks,
      users,
      sink,
      cpu: shares,
      streamingMean: ticks ? streamingSum / ticks : 0,
      streamingMin: ticks ? streamingMin : 0,
      serverRss,
      lags,
      offeredPerSecond: o.streams * (1000 / o.chunkMs),
    };
  } finally {
    for (const s of sockets) s.disconnect();
  }
}

// ---------------------------------------------------------------------------------------------- run

// ------------------------------------------------------------------------------------------- floor

/** CPU per chunk (µs) of the parts of the streaming path that are not Wegent's, each run alone. */
interface FloorFigures {
  streams: number;
  chunks: number;
  /** The fake model server writing the answers (its own process), measured while the AI SDK read them. */
  fakeModel: number;
  /** The AI SDK provider Wegent uses (openai-compatible, the runtime's pinned fetch), reading every part. */
  aiSdk: number;
  /** node:http, a bare SSE split and JSON.parse per event: reading the same answers without the SDK. */
  bareHttp: number;
  /** A bare Socket.IO server sending one `chat:chunk` per chunk to a room per stream (its own process). */
  socketIoServer: number;
  /** The socket.io-client websocket clients receiving them (this process). */
  socketIoClients: number;
}

type DoStreamModel = Extract<ReturnType<typeof createLanguageModel>, { specificationVersion: 'v3' }>;

/** Runs `streams` reads at once; CPU per chunk of this process and of `child` over them. */
async function perChunk(child: ChildServer, streams: number, read: () => Promise<number>): Promise<{ self: number; child: number; chunks: number }> {
  const childBefore = await child.usage();
  const selfBefore = process.cpuUsage();
  const counts = await Promise.all(Array.from({ length: streams }, read));
  const self = process.cpuUsage(selfBefore);
  const childAfter = await child.usage();
  const chunks = counts.reduce((a, b) => a + b, 0);
  return { self: (self.user + self.system) / chunks, child: (childAfter.cpuMicros - childBefore.cpuMicros) / chunks, chunks };
}

async function runFloor(streams: number, chunks: number, chunkMs: number, log: (m: string) => void): Promise<FloorFigures> {
  const fake = await ChildServer.start({ kind: 'fake-model', chunks, chunkMs, chunkChars: CHUNK_CHARS });
  const pinned = createPinnedFetch(modelAddressPolicy(false, { privateHostsAllow: ['127.0.0.1'] }));
  const agent = new http.Agent({ keepAlive: true });
  try {
    const connection = { resource: { namespace: 'default', name: 'm' }, protocol: 'openai-compatible', modelId: 'm', baseUrl: fake.url } as ModelConnection;
    const model = createLanguageModel(connection, pinned.fetch) as DoStreamModel;
    const prompt = [{ role: 'user' as const, content: [{ type: 'text' as const, text: LOAD_PROMPT }] }];
    const viaSdk = async () => {
      const reader = (await model.doStream({ prompt })).stream.getReader();
      let n = 0;
      for (let part = await reader.read(); !part.done; part = await reader.read()) if (part.value.type === 'text-delta') n++;
      return n;
    };
    const body = JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: LOAD_PROMPT }] });
    const viaHttp = () => new Promise<number>((resolve, reject) => {
      const req = http.request(`${fake.url}/chat/completions`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
        let buffer = '';
        let n = 0;
        res.setEncoding('utf8');
        res.on('data', (text: string) => {
          buffer += text;
          for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
            const event = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            if (!event.startsWith('data: {')) continue;
            const chunk = JSON.parse(event.slice(6)) as { choices?: { delta?: { content?: string } }[] };
            if (chunk.choices?.[0]?.delta?.content) n++;
          }
        });
        res.on('end', () => resolve(n));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
    log(`floor: the AI SDK provider reading ${streams} streams alone…`);
    const sdk = await perChunk(fake, streams, viaSdk);
    log(`floor: node:http reading ${streams} streams alone…`);
    const bare = await perChunk(fake, streams, viaHttp);

    log(`floor: a bare Socket.IO server sending to ${streams} clients…`);
    const io = await ChildServer.start({ kind: 'socketio' });
    const sockets: Socket[] = [];
    try {
      let received = 0;
      for (let room = 0; room < streams; room++) {
        const socket = ioClient(`${io.url}/chat`, { transports: ['websocket'], auth: { room }, forceNew: true, reconnection: false });
        socket.on('chat:chunk', () => { received++; });
        await new Promise<void>((resolve, reject) => {
          socket.once('connect', () => resolve());
          socket.once('connect_error', reject);
        });
        sockets.push(socket);
      }
      const serverBefore = await io.usage();
      const selfBefore = process.cpuUsage();
      await io.command({ cmd: 'emit', rooms: streams, chunks, chunkMs, chunkChars: CHUNK_CHARS });
      const sent = streams * chunks;
      for (let i = 0; received < sent && i < 100; i++) await sleep(20);
      const self = process.cpuUsage(selfBefore);
      const serverAfter = await io.usage();
      return {
        streams,
        chunks: sdk.chunks,
        fakeModel: sdk.child,
        aiSdk: sdk.self,
        bareHttp: bare.self,
        socketIoServer: (serverAfter.cpuMicros - serverBefore.cpuMicros) / sent,
        socketIoClients: (self.user + self.system) / Math.max(1, received),
      };
    } finally {
      for (const socket of sockets) socket.close();
      await io.stop();
    }
  } finally {
    pinned.close();
    agent.destroy();
    await fake.stop();
  }
}

async function run({ machine, log: print }: Parameters<Benchmark['run']>[0]): Promise<BenchmarkReport> {
  const t0 = Date.now();
  const log = (m: string) => print(`+${String(Math.round((Date.now() - t0) / 1000)).padStart(3)} s  ${m}`);
  const ttftSamples = envNumber('BENCH_STREAM_TTFT_SAMPLES', 200, 10);
  const ttftWarmup = envNumber('BENCH_STREAM_TTFT_WARMUP', 30, 0);
  const durationS = envNumber('BENCH_STREAM_DURATION', 10, 1);
  const warmupS = envNumber('BENCH_STREAM_WARMUP', 3, 0);
  const chunks = envNumber('BENCH_STREAM_CHUNKS', 500, 1);
  const churnChunks = envNumber('BENCH_STREAM_CHURN_CHUNKS', 50, 1);
  const chunkMs = envNumber('BENCH_STREAM_CHUNK_MS', 20, 1);
  const chunksOf = (id: LoadId) => (id === 'churn-200' ? churnChunks : chunks);
  // Starts are spread over one answer length: measure once every stream is in its steady state.
  const warmupOf = (id: LoadId) => process.env.BENCH_STREAM_WARMUP ? warmupS : Math.max(3, Math.ceil((chunksOf(id) * chunkMs) / 1000) + 2);
  const profileDir = process.env.BENCH_CPU_PROF ? path.resolve(process.env.BENCH_CPU_PROF) : undefined;
  const selected = selectedScenarios('BENCH_STREAM_SCENARIOS', ALL_SCENARIOS);
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  const loadScenarios = LOAD_IDS.filter((s) => selected.has(s));
  const maxStreams = Math.max(0, ...loadScenarios.map((s) => LOAD_STREAMS[s]));
  const started = Date.now();

  const tmp = mkdtempSync(path.join(os.tmpdir(), 'wegent-bench-'));
  const adminPassword = `${randomBytes(24).toString('base64url')}-Aa1`;
  const userPassword = `${randomBytes(24).toString('base64url')}-Bb2`;
  const overrides = {
    port: 0,
    host: '127.0.0.1',
    dataDir: tmp,
    databaseUrl: `sqlite:${path.join(tmp, 'wegent.db')}`,
    rate: { login: 0, default: 0, send: 0, aiCreate: 0 },
    maxRunningPerUser: MAX_RUNNING_PER_USER,
    workerConcurrency: WORKER_CONCURRENCY,
    privateHostsAllow: ['127.0.0.1'],
  };
  // Read by the chat gateway from process.env (not through the server's config): set in the child's environment.
  const processEnv = { WEGENT_SOCKET_MAX_PER_USER: String(SOCKET_MAX_PER_USER), WEGENT_SOCKET_TRANSPORTS: 'websocket,polling' };
  const limits = [
    'rate limits: off (`rate: {login: 0, default: 0, send: 0, aiCreate: 0}`, i.e. WEGENT_RATE_LOGIN/DEFAULT/SEND/AI_CREATE = 0; default send limit 30/min per user)',
    `runs admitted per user: ${fmt.int(MAX_RUNNING_PER_USER)} (\`maxRunningPerUser\`, WEGENT_MAX_RUNNING_PER_USER; default 5)`,
    `worker concurrency: ${fmt.int(WORKER_CONCURRENCY)} runs (\`workerConcurrency\`, WEGENT_WORKER_CONCURRENCY; default 50) — above the ${fmt.int(Math.max(1, maxStreams))} concurrent streams`,
    `sockets per user: at most ${SOCKET_MAX_PER_USER} (WEGENT_SOCKET_MAX_PER_USER=${SOCKET_MAX_PER_USER}, the default, set explicitly in the server's environment); the load uses ${SOCKETS_PER_USER} socket per user and one stream per socket, so ${fmt.int(Math.max(1, maxStreams))} streams come from ${fmt.int(Math.ceil(Math.max(1, maxStreams) / SOCKETS_PER_USER))} users`,
    'private hosts: `privateHostsAllow: [127.0.0.1]` (WEGENT_PRIVATE_HOSTS_ALLOW=127.0.0.1) so that the Model may point at the loopback fake model server',
    'Socket.IO transports (server): websocket,polling (WEGENT_SOCKET_TRANSPORTS, the default); clients connect with websocket only',
    'database: SQLite file in a fresh temporary directory (server defaults: WAL, synchronous=NORMAL); public seed resources on',
    'logger: pino level silent',
    'sandboxes: off (WEGENT_SANDBOX_DRIVER=none; the chat shell needs none)',
    `model: the fake model server (@wegent/runtime/testing) on 127.0.0.1 in the benchmark process, OpenAI chat completions (\`protocol: openai-compatible\`), streaming`,
    `ttft: ${ttftWarmup} warm-up pairs, then ${ttftSamples} pairs (one Wegent sample and one direct sample each, alternating which goes first), one stream at a time`,
    `load: answers of ${chunks} chunks (churn-200: ${churnChunks}), ${chunkMs} ms apart (${CHUNK_CHARS} characters each); warm-up of one answer length + 2 s (at least 3 s${process.env.BENCH_STREAM_WARMUP ? `; set to ${warmupS} s` : ''}), then ${durationS} s measured per scenario; each client starts a new task as soon as its previous one ends`,
  ];
  log(`limits: ${limits.join('; ')}`);

  const fake = await startFakeModelServer();
  let wegent: ChildServer | undefined;
  try {
    log('starting Wegent (child process)…');
    wegent = await ChildServer.start({ kind: 'wegent', overrides, env: { WEGENT_ADMIN_PASSWORD: adminPassword } }, { processEnv });
    const W = wegent.url;
    const adminToken = await login(W, 'admin', adminPassword);
    // The Model, Ghost, Bot and Team are public (applied once by the admin with scope=public), as an
    // operator publishes a shared team; every user's `team: t` resolves to them.
    await expectStatus('apply the public Model, Ghost, Bot and Team', call(W, 'POST', '/api/v1/apply?scope=public', { token: adminToken, yaml: manifest(fake) }), 200);
    const names = ['ttft', ...Array.from({ length: Math.ceil(maxStreams / SOCKETS_PER_USER) }, (_, i) => `load-${String(i).padStart(4, '0')}`)];
    log(`creating ${names.length} users (each an argon2 hash and a login)…`);
    const tokens = await pool(names, 8, async (name) => (await createUser(W, adminToken, `bench-${name}`, userPassword)).token);
    log(`${names.length} users ready`);
    scriptFake(fake, chunks, chunkMs);

    let ttft: TtftFigures | undefined;
    if (selected.has('ttft')) {
      log('ttft: one stream at a time…');
      ttft = await runTtft(W, tokens[0]!, fake, wegent, ttftSamples, ttftWarmup, profileDir && path.join(profileDir, 'wegent-ttft.cpuprofile'), log);
    }
    const loads: LoadFigures[] = [];
    for (const id of loadScenarios) {
      fake.reset(); // forget recorded requests (memory); the replies are scripted again
      scriptFake(fake, chunksOf(id), chunkMs);
      const figures = await runLoad(W, tokens.slice(1), wegent, { streams: LOAD_STREAMS[id], chunks: chunksOf(id), chunkMs, warmupS: warmupOf(id), durationS, profileFile: profileDir && path.join(profileDir, `wegent-${id}.cpuprofile`), label: id }, log);
      const [p50, p99] = percentiles(figures.sink.latencies, [0.5, 0.99]);
      log(`${id}: chunk latency p50 ${fmt.ms(p50!)}, p99 ${fmt.ms(p99!)}; ${fmt.int(figures.sink.receivedInWindow / durationS)} chunks/s; server CPU ${fmt.pct(figures.cpu.server)}, this process ${fmt.pct(figures.cpu.self)}`);
      loads.push(figures);
    }

    let floor: FloorFigures | undefined;
    if (selected.has('floor')) floor = await runFloor(TARGET_CHUNK_STREAMS, chunks, chunkMs, log);

    return report({ machine, started, limits, ttft, loads, floor, durationS, chunks, chunkMs, selected, profileDir });
  } finally {
    await wegent?.stop();
    await fake.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------------------- report

function report(r: {
  machine: Parameters<Benchmark['run']>[0]['machine'];
  started: number;
  limits: string[];
  ttft?: TtftFigures;
  loads: LoadFigures[];
  floor?: FloorFigures;
  durationS: number;
  chunks: number;
  chunkMs: number;
  selected: Set<string>;
  profileDir?: string;
}): BenchmarkReport {
  const pass = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
  const Q = [0.5, 0.9, 0.99];
  const targetRows: string[][] = [];
  const verdicts: string[] = [];

  // ttft
  const ttftTable: Table = { title: 'Time to first token, one stream at a time', columns: ['Measure', 'p50', 'p90', 'p99', 'samples'], right: [1, 2, 3, 4], rows: [] };
  const ttftTarget = `time to first token added by Wegent, p50 ≤ ${TARGET_ADDED_TTFT_MS} ms (one stream)`;
  if (r.ttft) {
    const w = percentiles(r.ttft.wegent.map((s) => s.firstChunkMs), Q);
    const d = percentiles(r.ttft.direct, Q);
    const ack = percentiles(r.ttft.wegent.map((s) => s.ackMs), Q);
    const start = percentiles(r.ttft.wegent.map((s) => s.startMs), Q);
    const added = Q.map((_, i) => w[i]! - d[i]!);
    const n = String(r.ttft.wegent.length);
    ttftTable.rows.push(
      ['**added by Wegent** (Wegent − direct, per percentile)', ...added.map(fmt.ms), n],
      ['via Wegent: `chat:send` emitted → first `chat:chunk` received', ...w.map(fmt.ms), n],
      ['direct: request to the fake model → first content delta', ...d.map(fmt.ms), String(r.ttft.direct.length)],
      ['via Wegent: `chat:send` emitted → ack received', ...ack.map(fmt.ms), n],
      ['via Wegent: `chat:send` emitted → `chat:start` received', ...start.map(fmt.ms), n],
    );
    targetRows.push([ttftTarget, `${fmt.ms(added[0]!)} (p90 ${fmt.ms(added[1]!)}, p99 ${fmt.ms(added[2]!)})`, pass(added[0]! <= TARGET_ADDED_TTFT_MS)]);
  } else targetRows.push([ttftTarget, 'not run', '—']);

  // load
  const loadTable: Table = {
    title: `Concurrent streams (chunks ${r.chunkMs} ms apart; ${r.durationS} s measured; CPU: 100% = one core)`,
    columns: ['Scenario', 'Streams', 'answer', 'users × sockets', 'chunk latency p50', 'p90', 'p99', 'max', 'chunks/s delivered', 'chunks/s if always streaming', 'streaming at once (mean / min)', 'TTFT p50 / p99', 'answer length p50 (ideal)', 'answers done', 'server CPU per chunk / per answer', 'server event-loop delay p50 / max', 'server CPU', 'bench process CPU', 'other CPU', 'server RSS', 'problems'],
    right: [1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19],
    rows: [],
  };
  for (const l of r.loads) {
    const [p50, p90, p99] = percentiles(l.sink.latencies, Q);
    const max = l.sink.latencies.reduce((a, b) => Math.max(a, b), 0);
    const [t50, t99] = percentiles(l.sink.ttft, [0.5, 0.99]);
    const [s50] = percentiles(l.sink.streamMs, [0.5]);
    const [lag50] = percentiles(l.lags, [0.5]);
    const lagMax = l.lags.reduce((a, b) => Math.max(a, b), 0);
    // Server CPU over the window: its share (measured between its own reading times) × the window.
    const serverMs = l.cpu.server * r.durationS * 1000;
    const issues = [...l.sink.problems].map(([k, v]) => `${fmt.int(v)}× ${k}`);
    if (l.sink.missingChunks) issues.push(`${fmt.int(l.sink.missingChunks)} chunks missing`);
    if (l.sink.strayEvents) issues.push(`${fmt.int(l.sink.strayEvents)} events outside a stream`);
    if (l.cpu.self >= CLIENT_SATURATED) issues.push('benchmark process saturated its core: latency is an upper bound');
    loadTable.rows.push([
      l.label,
      fmt.int(l.streams),
      `${fmt.int(l.chunks)} chunks`,
      `${fmt.int(l.users)} × ${SOCKETS_PER_USER}`,
      fmt.ms(p50!),
      fmt.ms(p90!),
      fmt.ms(p99!),
      fmt.ms(max),
      fmt.int(l.sink.receivedInWindow / r.durationS),
      fmt.int(l.offeredPerSecond),
      `${l.streamingMean.toFixed(0)} / ${l.streamingMin}`,
      `${fmt.ms(t50!)} / ${fmt.ms(t99!)}`,
      `${fmt.ms(s50!)} (${fmt.ms((l.chunks - 1) * r.chunkMs)})`,
      fmt.int(l.sink.streamsDoneInWindow),
      `${fmt.us((serverMs * 1000) / Math.max(1, l.sink.receivedInWindow))} / ${fmt.ms(serverMs / Math.max(1, l.sink.streamsDoneInWindow))}`,
      `${fmt.ms(lag50!)} / ${fmt.ms(lagMax)}`,
      fmt.pct(l.cpu.server),
      fmt.pct(l.cpu.self),
      fmt.pct(l.cpu.other),
      fmt.bytes(l.serverRss),
      issues.join('; ') || '—',
    ]);
  }
  const chunkTarget = `chunk latency p99 ≤ ${TARGET_CHUNK_P99_MS} ms at ${TARGET_CHUNK_STREAMS} concurrent streams`;
  const at200 = r.loads.find((l) => l.label === 'streams-200');
  if (at200) {
    const [p99] = percentiles(at200.sink.latencies, [0.99]);
    targetRows.push([chunkTarget, `${fmt.ms(p99!)} (${fmt.int(at200.sink.latencies.length)} chunks)`, pass(p99! <= TARGET_CHUNK_P99_MS)]);
  } else targetRows.push([chunkTarget, 'not run', '—']);

  // floor
  const floorTable: Table = {
    title: `The parts of streams-200 that are not Wegent's, each alone (CPU per chunk; share of one core at ${fmt.int(TARGET_CHUNK_STREAMS * (1000 / r.chunkMs))} chunks/s)`,
    columns: ['Part', 'CPU per chunk', 'cores at the streams-200 rate'],
    right: [1, 2],
    rows: [],
  };
  let floorNote = '';
  if (r.floor) {
    const f = r.floor;
    const rate = TARGET_CHUNK_STREAMS * (1000 / r.chunkMs);
    const cores = (us: number) => ((us * rate) / 1e6).toFixed(2);
    const needed = f.fakeModel + f.aiSdk + f.socketIoServer + f.socketIoClients;
    floorTable.rows.push(
      ['the fake model server writing the chunks (its own process)', fmt.us(f.fakeModel), cores(f.fakeModel)],
      ['the AI SDK provider reading them (`openai-compatible`, the runtime\'s pinned fetch, every stream part)', fmt.us(f.aiSdk), cores(f.aiSdk)],
      ['a bare Socket.IO server sending a `chat:chunk` per chunk (its own process)', fmt.us(f.socketIoServer), cores(f.socketIoServer)],
      ['the socket.io-client websocket clients receiving them', fmt.us(f.socketIoClients), cores(f.socketIoClients)],
      ['**sum: what streams-200 needs before Wegent does anything of its own**', `**${fmt.us(needed)}**`, `**${cores(needed)}** of ${r.machine.cores}`],
      ['for comparison: node:http, a bare SSE split and JSON.parse reading the same answers (instead of the AI SDK)', fmt.us(f.bareHttp), cores(f.bareHttp)],
    );
    const l = r.loads.find((x) => x.label === 'streams-200');
    const measured = l ? (l.cpu.server + l.cpu.self) * 1e6 / Math.max(1, l.sink.receivedInWindow / r.durationS) : undefined;
    floorNote = `At ${fmt.int(rate)} chunks/s (${TARGET_CHUNK_STREAMS} streams × ${Math.round(1000 / r.chunkMs)} chunks/s) the parts alone keep ${cores(needed)} of the machine's ${r.machine.cores} cores busy, ` +
      `${((needed * rate) / 1e4 / r.machine.cores).toFixed(0)}% of it, of which the AI SDK's own stream pipeline (web streams, SSE parsing, a zod validation of every chunk) is ${cores(f.aiSdk)} cores` +
      (measured !== undefined ? `; the whole streams-200 run above (Wegent server + benchmark process) used ${fmt.us(measured)} per chunk delivered, so Wegent's own work (thread hand-off, stream buffer, bus, persistence) is about ${fmt.us(Math.max(0, measured - needed))} per chunk.` : '.');
  }

  const targets: Table = { title: 'Targets', columns: ['Target', 'Measured', 'Result'], rows: targetRows };
  verdicts.push(...targetRows.map((t) => `${t[2]}  ${t[0]} — ${t[1]}`));
  const busiest = Math.max(r.ttft?.cpu.other ?? 0, ...r.loads.map((l) => l.cpu.other));
  if (busiest > NOISY_OTHER_CPU) verdicts.push(`NOTE  other processes used up to ${fmt.pct(busiest)} of a core during the measurements: figures disturbed`);
  const contention =
    busiest > NOISY_OTHER_CPU
      ? `**Caution:** other processes on the machine used up to ${fmt.pct(busiest)} of a core during the measurements (column *other CPU*, which also counts the kernel's loopback network work); the figures are disturbed. Rerun on an idle machine for clean numbers.`
      : `Other processes used at most ${fmt.pct(busiest)} of a core during the measurements (column *other CPU*, which also counts the kernel's loopback network work).`;
  const limitsTable: Table = { title: 'Limits set by this benchmark', columns: ['Limit'], rows: r.limits.map((l) => [l]) };
  const ttftCpu = r.ttft
    ? `During the measured ttft samples the server used ${fmt.ms(r.ttft.cpu.serverMs / Math.max(1, r.ttft.wegent.length))} of CPU per Wegent sample (a whole run: send, queue, model call, ${TTFT_REPLY.length} chunks, completion) and ${fmt.pct(r.ttft.cpu.server)} of a core, the benchmark process ${fmt.pct(r.ttft.cpu.self)}, other processes ${fmt.pct(r.ttft.cpu.other)}.`
    : '';

  const markdown = [
    '## Streaming (`bench/stream.ts`)',
    '',
    `Run ${new Date(r.started).toISOString().replace(/\.\d+Z$/, 'Z')} on ${machineLine(r.machine)}; took ${Math.round((Date.now() - r.started) / 1000)} s.`,
    '',
    'The real Wegent server (`startServer`, SQLite) runs in its **own child process**; the fake model server',
    '(`startFakeModelServer` from `@wegent/runtime/testing`) and the Socket.IO clients (`socket.io-client`, websocket',
    'transport, `/chat` namespace) run in the benchmark process, so on this 2-core machine the server has one core',
    'and the model and the clients share the other. The admin applies one **public** Model (`openai-compatible`,',
    'base URL = the fake server), Ghost (no tools), Bot (shell `Chat`) and Team (one member); every client is a',
    'normal user (role `user`, its own JWT, one socket) whose `chat:send {team: t}` resolves to them, and every',
    'stream is a new task.',
    '',
    ...limitsAndTargets(r.limits, targets),
    contention,
    '',
    '### Time to first token added by Wegent',
    '',
    r.ttft ? markdownTable(ttftTable) : '_not run_',
    '',
    'As DESIGN.md §2 defines it: each percentile of (`chat:send` emitted → first `chat:chunk` received, a new task',
    'each sample) minus the same percentile of (a request sent straight to the same fake model with `fetch` → first',
    'non-empty `delta.content` received, the SSE parsed with eventsource-parser as the AI SDK does), both kinds of',
    'sample interleaved one by one in the same run after the warm-up, one stream at a time (a Wegent sample waits',
    `for its task's terminal \`task:status\` before the next sample). The fake model answers at once (${TTFT_REPLY.length} text`,
    'chunks, no delay), so the direct figure is the floor of loopback HTTP plus SSE parsing. The ack and',
    '`chat:start` rows break the Wegent figure down. The difference of two percentiles is not a percentile of',
    `differences; at p50 it is what the design asks for. ${ttftCpu}`,
    '',
    '### Concurrent streams',
    '',
    r.loads.length ? markdownTable(loadTable) : '_not run_',
    '',
    '- *Method*: every answer of the fake model is scripted as chunks whose text is the moment the fake server',
    `  writes them, \`t=<ms>;\` padded to ${CHUNK_CHARS} characters (\`performance.timeOrigin + performance.now()\`, read just`,
    '  before the chunk is encoded and written to the socket). The client receiving `chat:chunk` reads the stamps in',
    '  its text (a chunk that carried several, or a stamp split over two chunks, is handled) and records receive time',
    '  − write time. Fake server and clients run in the same process, so both read the same clock; the latency',
    "  covers Wegent reading the model's stream, recording the delta (stream buffer, seq, bus) and emitting it over",
    '  Socket.IO, plus the loopback hops and the client decoding the frame.',
    '- *chunk latency*: of every chunk the fake model wrote during the measured window (chunks received after the',
    '  window are waited for). *chunks/s delivered*: chunks received during the window ÷ its length. *chunks/s if',
    `  always streaming*: streams × ${Math.round(1000 / r.chunkMs)}/s, the rate if no stream ever waited between answers.`,
    '- *streaming at once*: streams that had received their first chunk and not yet ended, sampled every 100 ms; the',
    '  rest of the clients were between `chat:send` and the first chunk. Each client runs one stream at a time and',
    '  starts its next task as soon as `chat:done` arrives; starts are spread over one answer length.',
    '- *TTFT*: `chat:send` → first `chat:chunk` of the streams started in the window (includes the fake model\'s',
    `  ${r.chunkMs} ms before its first chunk). *answer length*: first chunk → \`chat:done\` (ideal: (chunks − 1) × ${r.chunkMs} ms).`,
    `- *Answers*: streams-200 and streams-1000 stream answers of ${r.chunks} chunks (${(r.chunks * r.chunkMs) / 1000} s: about a ${r.chunks}-token answer at`,
    `  ${Math.round(1000 / r.chunkMs)} tokens/s), so each client starts a new task every ${(r.chunks * r.chunkMs) / 1000} s; the chunk target is judged on streams-200.`,
    '  churn-200 has the same 200 clients start a new task every second (short answers): it adds the cost of starting',
    '  a run (task, messages, queue, resolution — about 50 SQL statements) to every 50 chunks and shows where the',
    '  server saturates; it has no target.',
    '- *server CPU per chunk / per answer*: CPU time of the server process over the window ÷ the chunks delivered, and',
    '  ÷ the answers completed, in it (each figure carries the other\'s work: a run\'s fixed cost and its chunks).',
    '- *server event-loop delay*: round trip of a small IPC request to the server process (answered on its event',
    '  loop) every 250 ms during the window: how long any event waits there before it is handled.',
    '- *CPU columns*: share of one core over the window: the server process, the benchmark process (fake model and',
    '  all clients), and everything else (`os.cpus()`, including kernel loopback work). When the benchmark process',
    '  nears 100%, part of the latency is the clients and the fake model waiting for CPU, not Wegent.',
    '',
    '### What the load costs without Wegent',
    '',
    r.floor ? markdownTable(floorTable) : '_not run_',
    '',
    ...(r.floor ? [floorNote, ''] : []),
    `- *Method*: the same answers as streams-200 (${r.chunks} chunks, ${r.chunkMs} ms apart, ${TARGET_CHUNK_STREAMS} at once), each part run alone with`,
    '  nothing else on the machine: the fake model server in a child process, read once by the AI SDK provider that',
    '  Wegent builds for an `openai-compatible` Model (`createLanguageModel` with `createPinnedFetch`, `doStream`, every',
    '  part read), once by node:http with a bare SSE split; then a bare Socket.IO server (the server\'s socket.io package, no',
    '  Wegent) in a child process sending a `chat:chunk`-shaped event to one room per client at the same rate to',
    `  ${TARGET_CHUNK_STREAMS} socket.io-client websocket clients. CPU per chunk = process CPU time (user + system) over the run ÷ chunks.`,
    '  Kernel work billed to no process (loopback TCP) is not counted, so the sum is a lower bound.',
  ].join('\n');

  const partial = r.selected.size < ALL_SCENARIOS.length ? 'BENCH_STREAM_SCENARIOS selects a subset' : r.profileDir ? 'BENCH_CPU_PROF slows the server down' : undefined;
  return { tables: [limitsTable, ttftTable, loadTable, ...(r.floor ? [floorTable] : []), targets], markdown, verdicts, doNotWrite: partial };
}

export const benchmark: Benchmark = { id: 'stream', title: 'Streaming: time to first token and concurrent streams over Socket.IO', run };
