import { z } from 'zod';
import type { SandboxSession } from '@wegent/core';
import type { ResolvedSkill, RunHost } from '../run/types.js';
import type { SandboxLease } from './sandbox-tools.js';
import { ToolError, type RuntimeTool } from './tool.js';

export const LoadSkillInput = z.object({
  name: z.string().max(256).describe('The name of a skill from the list in the system prompt'),
});
export type LoadSkillInput = z.infer<typeof LoadSkillInput>;

export interface LoadSkillOptions {
  /** The skills this turn may load (bound to its shell, not preloaded), in the Ghost's order. */
  skills: readonly ResolvedSkill[];
  /**
   * Sandboxed turns: copies the skill's package into `/workspace/.skills/<name>/` and returns its files'
   * relative paths (runtime.md §8); see `sandboxSkillInstaller`.
   */
  installPackage?: (skill: ResolvedSkill, signal: AbortSignal) => Promise<string[]>;
}

/** Packages already copied, by sandbox, skill and package hash → their paths (runtime.md §8: once per sandbox per hash). */
const installed = new Map<string, string[]>();
const INSTALLED_MAX = 1000;

/**
 * Copies a skill's package into the turn's sandbox at `/workspace/.skills/<name>/`, byte for byte
 * (base64 writes), once per sandbox per package hash; returns the files' relative paths.
 */
export function sandboxSkillInstaller(lease: SandboxLease, loadPackage: NonNullable<RunHost['loadSkillPackage']>): NonNullable<LoadSkillOptions['installPackage']> {
  return async (skill, signal) => installSkillPackage(await lease.session(), skill, loadPackage, signal);
}

/** Copies one skill's package into `session`'s sandbox (see `sandboxSkillInstaller`). */
export async function installSkillPackage(session: SandboxSession, skill: ResolvedSkill, loadPackage: NonNullable<RunHost['loadSkillPackage']>, signal: AbortSignal): Promise<string[]> {
  const key = `${session.id}\0${skill.uid}\0${skill.packageHash ?? ''}`;
  const known = installed.get(key);
  if (known) return known;
  const files = await loadPackage(skill);
  for (const f of files) {
    await session.writeFile({ path: `/workspace/.skills/${skill.name}/${f.path}`, content: Buffer.from(f.data).toString('base64'), encoding: 'base64' }, { signal });
  }
  const paths = files.map((f) => f.path);
  if (installed.size >= INSTALLED_MAX) installed.delete(installed.keys().next().value!);
  installed.set(key, paths);
  return paths;
}

/**
 * The `load_skill` tool (runtime.md §6.3): returns a skill's body. One tool per turn, so a skill loaded
 * twice in the same turn is answered with a pointer to the first result instead of the body again.
 */
export function loadSkillTool(options: LoadSkillOptions): RuntimeTool<LoadSkillInput> {
  const loaded = new Set<string>();
  const names = options.skills.map((s) => s.name);
  return {
    name: 'load_skill',
    description: 'Load the full instructions of one of the skills listed in the system prompt. Call it when a task matches the skill\u2019s description.',
    source: 'builtin',
    inputSchema: LoadSkillInput,
    timeoutMs: 60_000,
    execute: async (input, ctx) => {
      const wanted = input.name.trim();
      const skill = options.skills.find((s) => s.name === wanted) ?? options.skills.find((s) => s.name.toLowerCase() === wanted.toLowerCase());
      if (!skill) throw new ToolError(`unknown skill '${input.name}'; skills you can load: ${names.join(', ')}`);
      if (loaded.has(skill.name)) return `Skill ${skill.name} is already loaded above.`;
      let text = `# Skill: ${skill.name}\n\n${skill.body}`;
      const files = skill.packageHash && options.installPackage ? await options.installPackage(skill, ctx.signal) : [];
      if (files.length) text += `\n\nFiles of this skill are in /workspace/.skills/${skill.name}/:${[...files].sort().map((f) => `\n${f}`).join('')}`;
      loaded.add(skill.name);
      return text;
    },
  };
}
