import { oneLine } from './text-forms.js';

/**
 * Member names (runtime.md §4.2): the one-line display name of the Bot, else its name; members that would
 * share a name (ignoring case) each get ` (member <i>)`, `<i>` the 1-based position.
 */
export function memberNames(members: ReadonlyArray<{ bot: { name: string; displayName?: string } }>): string[] {
  const base = members.map((m) => {
    const display = m.bot.displayName === undefined ? '' : oneLine(m.bot.displayName);
    return display === '' ? m.bot.name : display;
  });
  const counts = new Map<string, number>();
  for (const name of base) counts.set(name.toLowerCase(), (counts.get(name.toLowerCase()) ?? 0) + 1);
  return base.map((name, i) => ((counts.get(name.toLowerCase()) ?? 0) > 1 ? `${name} (member ${i + 1})` : name));
}

/** The leader: the first member whose role is `leader` (any case), else member 0 (resources.md §14.1). */
export function leaderIndex(members: ReadonlyArray<{ role?: string }>): number {
  const i = members.findIndex((m) => m.role?.trim().toLowerCase() === 'leader');
  return i < 0 ? 0 : i;
}
