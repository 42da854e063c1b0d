import { DEFAULT_COMPACTION_TARGET, DEFAULT_COMPACTION_TRIGGER } from '../context/compaction.js';
import { DEFAULT_CONTEXT_WINDOW } from '../context/token-budget.js';
import { DEFAULT_TOOL_OUTPUT_MAX_TOKENS } from '../context/tool-output-cap.js';
import { WEB_FETCH_DEFAULT_MAX_BYTES } from '../tools/web-fetch.js';
import type { RuntimeConfig } from './types.js';

/** Runtime settings with the defaults of runtime.md §16 filled in. */
export interface ResolvedRuntimeConfig {
  maxToolRounds: number;
  maxToolsPerTurn: number;
  toolOutputMaxTokens: number;
  defaultContextWindow: number;
  compactionTrigger: number;
  compactionTarget: number;
  modelIdleTimeoutMs: number;
  turnTimeoutMs: number;
  privateHostsAllow: string[];
  modelAllowPrivate: boolean;
  fetchEnabled: boolean;
  fetchDenyHosts: string[];
  fetchMaxBytes: number;
  fetchTimeoutMs: number;
  version: string;
}

export const DEFAULT_MAX_TOOL_ROUNDS = 30;
export const DEFAULT_MODEL_TIMEOUT_SECONDS = 300;
export const DEFAULT_MODEL_MAX_RETRIES = 2;

/** Fills in the defaults (runtime.md §16). */
export function resolveRuntimeConfig(config: RuntimeConfig = {}): ResolvedRuntimeConfig {
  return {
    maxToolRounds: config.maxToolRounds ?? DEFAULT_MAX_TOOL_ROUNDS,
    maxToolsPerTurn: config.maxToolsPerTurn ?? 128,
    toolOutputMaxTokens: config.toolOutputMaxTokens ?? DEFAULT_TOOL_OUTPUT_MAX_TOKENS,
    defaultContextWindow: config.defaultContextWindow ?? DEFAULT_CONTEXT_WINDOW,
    compactionTrigger: config.compactionTrigger ?? DEFAULT_COMPACTION_TRIGGER,
    compactionTarget: config.compactionTarget ?? DEFAULT_COMPACTION_TARGET,
    modelIdleTimeoutMs: (config.modelIdleTimeoutSeconds ?? 120) * 1000,
    turnTimeoutMs: (config.turnTimeoutSeconds ?? 1800) * 1000,
    privateHostsAllow: [...(config.network?.privateHostsAllow ?? [])],
    modelAllowPrivate: config.network?.modelAllowPrivate ?? false,
    fetchEnabled: config.fetch?.enabled ?? true,
    fetchDenyHosts: [...(config.fetch?.denyHosts ?? [])],
    fetchMaxBytes: config.fetch?.maxBytes ?? WEB_FETCH_DEFAULT_MAX_BYTES,
    fetchTimeoutMs: config.fetch?.timeoutMs ?? 15_000,
    version: config.version ?? '0.1.0',
  };
}
