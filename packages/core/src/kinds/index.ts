import type { z } from 'zod';
import { BotSpec, GhostSpec, ModelSpec, ShellSpec, SkillSpec, TaskSpec, TeamSpec, WorkspaceSpec } from './specs.js';

export * from './specs.js';
export * from './fields.js';

export const API_VERSION = 'agent.wecode.io/v1';

export const KIND_NAMES = ['Ghost', 'Model', 'Shell', 'Bot', 'Team', 'Skill', 'Workspace', 'Task'] as const;
export type KindName = (typeof KIND_NAMES)[number];

/** Upstream kinds this server does not implement: skipped with a warning on apply (resources.md §1.1). */
export const UNSUPPORTED_UPSTREAM_KINDS = ['KnowledgeBase', 'Retriever', 'Device', 'Collaboration', 'Subscription'] as const;

export interface KindInfo {
  kind: KindName;
  plural: string;
  spec: z.ZodType;
  /** Order of writes inside one apply (dependencies first) and the reverse for deletes. */
  applyOrder: number;
}

export const KINDS: Record<KindName, KindInfo> = {
  Ghost: { kind: 'Ghost', plural: 'ghosts', spec: GhostSpec, applyOrder: 0 },
  Model: { kind: 'Model', plural: 'models', spec: ModelSpec, applyOrder: 0 },
  Shell: { kind: 'Shell', plural: 'shells', spec: ShellSpec, applyOrder: 0 },
  Skill: { kind: 'Skill', plural: 'skills', spec: SkillSpec, applyOrder: 0 },
  Workspace: { kind: 'Workspace', plural: 'workspaces', spec: WorkspaceSpec, applyOrder: 0 },
  Bot: { kind: 'Bot', plural: 'bots', spec: BotSpec, applyOrder: 1 },
  Team: { kind: 'Team', plural: 'teams', spec: TeamSpec, applyOrder: 2 },
  Task: { kind: 'Task', plural: 'tasks', spec: TaskSpec, applyOrder: 3 },
};

const byFold = new Map<string, KindName>();
for (const k of KIND_NAMES) {
  byFold.set(k.toLowerCase(), k);
  byFold.set(KINDS[k].plural, k);
}

/** Finds a kind by its name or plural, in any case. */
export function lookupKind(nameOrPlural: string): KindName | undefined {
  return byFold.get(nameOrPlural.toLowerCase());
}

export function isUnsupportedUpstreamKind(kind: string): string | undefined {
  return UNSUPPORTED_UPSTREAM_KINDS.find((k) => k.toLowerCase() === kind.toLowerCase());
}
