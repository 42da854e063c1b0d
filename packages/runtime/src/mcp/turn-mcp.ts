import type { HostResolver } from '../network/address-policy.js';
import type { ResolvedRuntimeConfig } from '../run/runtime-config.js';
import type { ResolvedMember } from '../run/types.js';
import type { TurnSandbox } from '../tools/sandbox-tools.js';
import type { RuntimeTool } from '../tools/tool.js';
import { openMcpServers } from './mcp-servers.js';

export interface TurnMcp {
  /** The MCP tools offered besides the turn's own, already cut to the per-turn maximum. */
  tools: RuntimeTool[];
  /** Warning blocks to show on the turn (unreachable or skipped servers, tools not offered). */
  warnings: Array<{ type: 'warning'; message: string }>;
  /** Closes clients and stops stdio servers; runs in the background at turn end. */
  close(): Promise<void>;
}

/**
 * The MCP part of a member turn (runtime.md §5, §7): connects the Ghost's servers, and when the turn
 * would offer more than `maxToolsPerTurn` tools, drops the last MCP tools with a warning.
 */
export async function openTurnMcp(input: {
  member: ResolvedMember;
  config: ResolvedRuntimeConfig;
  ownTools: readonly RuntimeTool[];
  signal: AbortSignal;
  sandbox?: TurnSandbox;
  sandboxesAvailable: boolean;
  resolver?: HostResolver;
}): Promise<TurnMcp> {
  const { member, config } = input;
  const opened = await openMcpServers({
    servers: member.ghost.mcpServers,
    ghostScope: member.ghost.scope,
    privateHostsAllow: config.privateHostsAllow,
    signal: input.signal,
    sandbox: input.sandbox,
    sandboxesAvailable: input.sandboxesAvailable,
    takenNames: input.ownTools.map((t) => t.name),
    resolver: input.resolver,
    version: config.version,
  });
  const warnings = opened.warnings.map((message) => ({ type: 'warning' as const, message }));
  const room = Math.max(0, config.maxToolsPerTurn - input.ownTools.length);
  const tools = opened.tools.slice(0, room);
  const dropped = opened.tools.length - tools.length;
  if (dropped > 0) warnings.push({ type: 'warning', message: `${dropped} MCP tools were not offered: a turn offers at most ${config.maxToolsPerTurn} tools.` });
  return { tools, warnings, close: opened.close };
}
