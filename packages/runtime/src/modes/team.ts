import type { MemberLineInput } from '../prompt/mode-prompts.js';
import type { RunContext } from '../run/member-step.js';

/** `<team>` of a decision text: the Team's display name, else its name (runtime.md §9.3). */
export function teamName(ctx: RunContext): string {
  const display = ctx.request.team.displayName;
  return display !== undefined && display.trim() !== '' ? display : ctx.request.team.name;
}

/** The member lines of a decision text for the given members, in Team order. */
export function memberLineInputs(ctx: RunContext, indices: readonly number[]): MemberLineInput[] {
  return indices.map((i) => {
    const m = ctx.request.members[i]!;
    return { name: ctx.names[i]!, role: m.role, ghostDescription: m.ghost.description, prompt: m.prompt };
  });
}

/**
 * An integer Team `collaborationOptions` value (resources.md §14.1): the default when absent or not an
 * integer, otherwise kept within its range (the server validates at write time; this guards old rows).
 */
export function intOption(ctx: RunContext, key: string, fallback: number, min: number, max: number): number {
  const value = ctx.request.modeOptions?.[key];
  if (typeof value !== 'number' || !Number.isInteger(value)) return fallback;
  return Math.min(max, Math.max(min, value));
}

/** A boolean Team `collaborationOptions` value. */
export function boolOption(ctx: RunContext, key: string, fallback: boolean): boolean {
  const value = ctx.request.modeOptions?.[key];
  return typeof value === 'boolean' ? value : fallback;
}
