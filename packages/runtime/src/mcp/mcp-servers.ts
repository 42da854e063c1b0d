/**
 * MCP servers of a member turn (runtime.md §7): the Ghost's `mcpServers` are connected at turn start,
 * all at once and each within 10 s; their tools are offered as `mcp__<server>__<tool>`; a server that
 * cannot be reached becomes a warning block and the turn goes on without it. HTTP servers go through the
 * address policy (§6.2) with a pinned connection; stdio servers run only inside the task's sandbox
 * (sandbox.md §14.3), never on this host.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport, SseError } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { SECRET_KEY_PATTERN, type GhostSpec, type SandboxSession } from '@wegent/core';
import { z } from 'zod';
import { addressPolicy, AddressRefusedError, type HostResolver } from '../network/address-policy.js';
import { createPinnedFetch, type PinnedFetch } from '../network/pinned-http.js';
import type { TurnSandbox } from '../tools/sandbox-tools.js';
import { ToolError, type RuntimeTool } from '../tools/tool.js';
import { mcpResultText, type McpCallResult } from './call-result.js';
import { UnixSocketTransport } from './socket-transport.js';
import { mcpToolName } from './tool-names.js';

/** One entry of a Ghost's `mcpServers` (resources.md §10.2), secrets in clear for this run only. */
export type McpServerSpec = NonNullable<GhostSpec['mcpServers']>[string];

/** How long connecting and listing the tools of one server may take (runtime.md §7). */
export const MCP_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_CALL_TIMEOUT_SECONDS = 60;
/** How long clients stay open after a call was cancelled, for its notifications/cancelled to go out. */
const CANCEL_GRACE_MS = 1000;
/** The §6.2 refusal, used as the reason of a refused MCP address. */
const REFUSED = 'this address is not allowed (private or local network)';

/**
 * The stdio relay of a sandbox session (sandbox.md §14.3). Sessions that have it expose these two
 * methods; the runtime checks for them, so a server whose sandboxes cannot run MCP servers yet gets a
 * warning instead of a crash.
 */
export interface SandboxStdioRelay {
  /** Starts the command inside the sandbox and returns the host-side path of the socket relaying its stdio. */
  startStdio(name: string, cfg: { command: string; args?: string[]; env?: Record<string, string> }, opts: { signal?: AbortSignal }): Promise<{ hostSocketPath: string }>;
  /** Stops the command's process group. */
  stopStdio(name: string, opts?: { signal?: AbortSignal }): Promise<void>;
}

function stdioRelayOf(session: SandboxSession): SandboxStdioRelay | undefined {
  const s = session as SandboxSession & Partial<SandboxStdioRelay>;
  return typeof s.startStdio === 'function' && typeof s.stopStdio === 'function' ? (s as unknown as SandboxStdioRelay) : undefined;
}

export interface OpenMcpServersInput {
  /** The Ghost's `mcpServers`, in the Ghost's order. */
  servers: Record<string, McpServerSpec> | undefined;
  /** `user` (a user-owned Ghost: address rules apply) or `public` (admin-managed: exempt except metadata). */
  ghostScope: string;
  privateHostsAllow: readonly string[];
  /** The run's signal: connecting and calls stop when it aborts. */
  signal: AbortSignal;
  /** The turn's sandbox, when it has one (Code shells, or a Ghost listing `sandbox`). */
  sandbox?: TurnSandbox;
  /** Whether the host can give sandboxes at all (`RunHost.acquireSandbox` present). */
  sandboxesAvailable: boolean;
  /** Names already taken by the turn's other tools. */
  takenNames: Iterable<string>;
  resolver?: HostResolver;
  version: string;
  /** Test seam: the connect limit (10 s). */
  connectTimeoutMs?: number;
}

export interface OpenMcpServers {
  /** The servers' tools, servers in the Ghost's order, tools in listing order. */
  tools: RuntimeTool[];
  /** One warning per server that was skipped or could not be reached. */
  warnings: string[];
  /** Closes every client and stops stdio processes; never rejects. */
  close(): Promise<void>;
}

interface ServerKind {
  type: 'streamable-http' | 'sse' | 'stdio';
}

function transportType(spec: McpServerSpec): ServerKind['type'] {
  // The stored spec may keep the user's spelling (`SSE`, or the `transport` alias).
  const given: unknown = spec.type ?? spec.transport;
  const raw = typeof given === 'string' ? given.trim().toLowerCase() : undefined;
  if (raw === 'streamable-http' || raw === 'sse' || raw === 'stdio') return raw;
  return spec.url !== undefined ? 'streamable-http' : 'stdio';
}

/** Secret values of a server's headers and env, removed from anything shown. */
function secretsOf(spec: McpServerSpec): string[] {
  return [...Object.values(spec.headers ?? {}), ...Object.values(spec.env ?? {})].filter((v) => v.length >= 4);
}

class ConnectTimeout extends Error {}

function causes(err: unknown): unknown[] {
  const out: unknown[] = [];
  let e: unknown = err;
  for (let i = 0; i < 6 && e; i++) {
    out.push(e);
    e = e instanceof Error ? e.cause : undefined;
  }
  return out;
}

/** The `<reason>` of "could not be reached" (runtime.md §7). */
export function unreachableReason(err: unknown, secrets: readonly string[], timeoutMs = MCP_CONNECT_TIMEOUT_MS): string {
  const chain = causes(err);
  if (chain.some((e) => e instanceof ConnectTimeout)) return `timed out after ${Math.round(timeoutMs / 1000)} s`;
  if (chain.some((e) => e instanceof AddressRefusedError)) return REFUSED;
  for (const e of chain) {
    if ((e instanceof StreamableHTTPError || e instanceof SseError) && typeof e.code === 'number' && e.code >= 100 && e.code < 600) return `HTTP ${e.code}`;
  }
  // `fetch failed` says nothing; its cause (ECONNREFUSED ...) does.
  const informative = chain.find((e) => e instanceof Error && e.message && !/^(SSE error: )?(fetch failed|TypeError: fetch failed)$/.test(e.message));
  let message = informative instanceof Error ? informative.message : chain[0] instanceof Error ? chain[0].message : String(err);
  for (const s of secrets) message = message.split(s).join('******');
  message = (message.split('\n')[0] ?? '').trim();
  return message.length > 200 ? message.slice(0, 200) : message;
}

const ListedTools = z
  .object({
    tools: z.array(z.object({ name: z.string(), description: z.string().optional(), inputSchema: z.unknown().optional() }).loose()),
    nextCursor: z.string().optional(),
  })
  .loose();
type ListedTool = z.infer<typeof ListedTools>['tools'][number];

/**
 * `tools/list`, all pages. Requested with a lenient result schema so one tool with an unusual input
 * schema does not cost the whole server; such schemas are wrapped below.
 */
async function listAllTools(client: Client, signal: AbortSignal, timeoutMs: number): Promise<ListedTool[]> {
  const tools: ListedTool[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 100; page++) {
    const res = await client.request({ method: 'tools/list', params: cursor ? { cursor } : {} }, ListedTools, { signal, timeout: timeoutMs });
    tools.push(...res.tools);
    if (!res.nextCursor || res.nextCursor === cursor) break;
    cursor = res.nextCursor;
  }
  return tools;
}

/** The JSON Schema offered to models: the tool's `inputSchema`, wrapped as an object schema when it is not one. */
export function offeredSchema(inputSchema: unknown): Record<string, unknown> {
  const schema = inputSchema && typeof inputSchema === 'object' && !Array.isArray(inputSchema) ? { ...(inputSchema as Record<string, unknown>) } : {};
  delete schema.$schema;
  if (schema.type !== 'object') return { type: 'object', properties: (schema.properties as object | undefined) ?? {}, ...(Array.isArray(schema.required) ? { required: schema.required } : {}) };
  if (!schema.properties) schema.properties = {};
  return schema;
}

function filtered(tools: ListedTool[], filter: McpServerSpec['tools']): ListedTool[] {
  const allow = filter?.allow;
  const deny = new Set(filter?.deny ?? []);
  return tools.filter((t) => (!allow || allow.includes(t.name)) && !deny.has(t.name));
}

interface Connected {
  client: Client;
  tools: ListedTool[];
  close(): Promise<void>;
}

/** Connects one client over `transport` and lists its tools, within the connect limit. */
async function connectClient(transport: Transport, signal: AbortSignal, timeoutMs: number, version: string): Promise<{ client: Client; tools: ListedTool[] }> {
  const client = new Client({ name: 'wegent', version });
  const limit = new AbortController();
  const timer = setTimeout(() => limit.abort(new ConnectTimeout('timeout')), timeoutMs);
  const both = AbortSignal.any([signal, limit.signal]);
  const stopped = new Promise<never>((_, reject) => {
    const onAbort = () => reject(limit.signal.aborted ? new ConnectTimeout('timeout') : new DOMException('This operation was aborted', 'AbortError'));
    if (both.aborted) onAbort();
    else both.addEventListener('abort', onAbort, { once: true });
  });
  stopped.catch(() => {});
  try {
    // Transports' `start` does not take a signal (the SSE client waits for its endpoint event), hence the race.
    await Promise.race([client.connect(transport, { signal: both, timeout: timeoutMs }), stopped]);
    const tools = await Promise.race([listAllTools(client, both, timeoutMs), stopped]);
    return { client, tools };
  } catch (err) {
    void client.close().catch(() => {});
    if (limit.signal.aborted && !signal.aborted) throw new ConnectTimeout('timeout', { cause: err });
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

async function connectHttp(spec: McpServerSpec, type: 'streamable-http' | 'sse', input: OpenMcpServersInput, pinned: PinnedFetch): Promise<Connected> {
  const url = new URL(spec.url!);
  const requestInit: RequestInit = { headers: { ...(spec.headers ?? {}) } };
  const timeoutMs = input.connectTimeoutMs ?? MCP_CONNECT_TIMEOUT_MS;
  const sse = () => new SSEClientTransport(url, { requestInit, fetch: pinned.fetch, eventSourceInit: { fetch: pinned.fetch } });
  let connected: { client: Client; tools: ListedTool[] };
  let session: StreamableHTTPClientTransport | undefined;
  if (type === 'sse') connected = await connectClient(sse(), input.signal, timeoutMs, input.version);
  else {
    try {
      const transport = new StreamableHTTPClientTransport(url, { requestInit, fetch: pinned.fetch });
      connected = await connectClient(transport, input.signal, timeoutMs, input.version);
      session = transport;
    } catch (err) {
      // A server that only speaks the older SSE transport answers the initialise POST with 404 or 405.
      const status = causes(err).find((e): e is StreamableHTTPError => e instanceof StreamableHTTPError)?.code;
      if (status !== 404 && status !== 405) throw err;
      connected = await connectClient(sse(), input.signal, timeoutMs, input.version);
    }
  }
  return {
    ...connected,
    close: async () => {
      // Ends the server's session (DELETE) rather than leaving it to expire.
      await session?.terminateSession().catch(() => {});
      await connected.client.close();
    },
  };
}

function localCommandWarning(name: string): string {
  return `MCP server '${name}' is a local command (stdio). Local commands only run inside a sandbox: add the sandbox tool to this Ghost, use a Code shell, or use an HTTP MCP server.`;
}

async function connectStdio(name: string, spec: McpServerSpec, relay: SandboxStdioRelay, input: OpenMcpServersInput): Promise<Connected> {
  const started = await relay.startStdio(name, { command: spec.command!, args: spec.args ?? [], env: spec.env ?? {} }, { signal: input.signal });
  const stop = () => relay.stopStdio(name).catch(() => {});
  try {
    const connected = await connectClient(new UnixSocketTransport(started.hostSocketPath), input.signal, input.connectTimeoutMs ?? MCP_CONNECT_TIMEOUT_MS, input.version);
    return {
      ...connected,
      close: async () => {
        await connected.client.close().catch(() => {});
        await stop();
      },
    };
  } catch (err) {
    void stop();
    throw err;
  }
}

/** Connects a member turn's MCP servers and makes their tools (runtime.md §7). Never rejects for a server's failure. */
export async function openMcpServers(input: OpenMcpServersInput): Promise<OpenMcpServers> {
  const entries = Object.entries(input.servers ?? {});
  const closers: Array<() => Promise<void>> = [];
  const pinnedFetches: PinnedFetch[] = [];
  const calls = { cancelled: false };
  const close = async () => {
    // An aborted call's notifications/cancelled is still on its way; closing the client now would cut it off.
    if (calls.cancelled) await new Promise((resolve) => setTimeout(resolve, CANCEL_GRACE_MS));
    await Promise.all(closers.map((c) => c().catch(() => {})));
    for (const p of pinnedFetches) p.close();
  };
  if (entries.length === 0) return { tools: [], warnings: [], close };

  // The sandbox is acquired once, before stdio servers start (runtime.md §6.4: at turn start).
  let sessionPromise: Promise<SandboxSession> | undefined;
  const sandboxSession = () => (sessionPromise ??= input.sandbox!.lease.session());

  const outcomes = await Promise.all(
    entries.map(async ([name, spec]): Promise<{ connected?: Connected; warning?: string }> => {
      const type = transportType(spec);
      const secrets = secretsOf(spec);
      try {
        if (type === 'stdio') {
          if (!spec.command) throw new Error('a stdio server needs a command');
          if (!input.sandbox) return { warning: localCommandWarning(name) };
          if (!input.sandboxesAvailable) return { warning: `MCP server '${name}' is a local command (stdio). Local commands only run inside a sandbox, and this server has no sandbox driver to run one.` };
          const secretEnv = Object.keys(spec.env ?? {}).some((k) => SECRET_KEY_PATTERN.test(k));
          if (secretEnv && input.ghostScope === 'public') {
            return { warning: `MCP server '${name}' was not started: its env holds secrets, and code in a sandbox that is not the Ghost owner's could read them.` };
          }
          const session = await sandboxSession();
          const relay = stdioRelayOf(session);
          if (!relay) return { warning: `MCP server '${name}' is a local command (stdio), and the sandboxes of this server cannot run MCP servers yet.` };
          const connected = await connectStdio(name, spec, relay, input);
          closers.push(connected.close);
          return { connected };
        }
        if (!spec.url) throw new Error(`a ${type} server needs a url`);
        const policy = addressPolicy(input.ghostScope === 'public' ? { allowNonPublic: true } : { privateHostsAllow: input.privateHostsAllow });
        const pinned = createPinnedFetch(policy, input.resolver);
        pinnedFetches.push(pinned);
        const connected = await connectHttp(spec, type, input, pinned);
        closers.push(connected.close);
        return { connected };
      } catch (err) {
        if (input.signal.aborted) return {};
        return { warning: `MCP server '${name}' could not be reached: ${unreachableReason(err, secrets, input.connectTimeoutMs)}` };
      }
    }),
  );

  const taken = new Set(input.takenNames);
  const tools: RuntimeTool[] = [];
  const warnings: string[] = [];
  outcomes.forEach((outcome, i) => {
    if (outcome.warning) warnings.push(outcome.warning);
    const connected = outcome.connected;
    if (!connected) return;
    const [serverName, spec] = entries[i]!;
    const timeoutSeconds = spec.timeoutSeconds ?? DEFAULT_CALL_TIMEOUT_SECONDS;
    for (const listed of filtered(connected.tools, spec.tools)) {
      const name = mcpToolName(serverName, listed.name, taken);
      taken.add(name);
      tools.push(mcpTool(connected.client, serverName, listed, name, timeoutSeconds, calls));
    }
  });
  return { tools, warnings, close };
}

/** Any JSON object: for MCP tools that is the only check (runtime.md §5); their server checks the rest. */
const AnyObject = z.record(z.string(), z.unknown());

function mcpTool(client: Client, server: string, listed: ListedTool, name: string, timeoutSeconds: number, calls: { cancelled: boolean }): RuntimeTool {
  return {
    name,
    description: listed.description ?? '',
    source: 'mcp',
    mcpServer: server,
    inputSchema: AnyObject as z.ZodType<unknown>,
    parameters: offeredSchema(listed.inputSchema),
    timeoutMs: timeoutSeconds * 1000,
    async execute(args, ctx) {
      // The tool loop enforces the time limit and aborts `ctx.signal`, which sends notifications/cancelled;
      // the SDK's own timer is set past it so that its message never wins.
      ctx.signal.addEventListener('abort', () => (calls.cancelled = true), { once: true });
      const result = (await client.callTool({ name: listed.name, arguments: args as Record<string, unknown> }, undefined, { signal: ctx.signal, timeout: timeoutSeconds * 1000 + 5000 })) as McpCallResult;
      const text = mcpResultText(result);
      if (result.isError) throw new ToolError(text);
      return text;
    },
  };
}
