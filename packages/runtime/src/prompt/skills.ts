import type { ResolvedMember, ResolvedSkill } from '../run/types.js';
import { oneLine } from './text-forms.js';

/** What a member's skills add to its turn (runtime.md §4.1 items 5–6, §8). */
export interface MemberSkills {
  /** Skills offered through `load_skill`, in the Ghost's order. */
  loadable: ResolvedSkill[];
  /** §4.1 item 5, absent when nothing is loadable. */
  catalogue?: string;
  /** §4.1 item 6: one part per preloaded skill, in `preload_skills` order. */
  preloaded: string[];
  /** Warning blocks for listed skills that were left out. */
  warnings: Array<{ type: 'warning'; message: string }>;
}

/** Splits a member's resolved skills into the catalogue, the preloaded bodies and the warnings. */
export function memberSkills(member: Pick<ResolvedMember, 'ghost' | 'shell'>): MemberSkills {
  const skills = member.ghost.skills ?? [];
  const preload = member.ghost.preloadSkills ?? [];
  const loadable = skills.filter((s) => !preload.includes(s.name));
  const catalogue = loadable.length ? `Skills you can load with the load_skill tool:${loadable.map((s) => `\n- ${s.name}: ${oneLine(s.description)}`).join('')}` : undefined;
  const preloaded = preload.flatMap((name) => {
    const skill = skills.find((s) => s.name === name);
    return skill ? [`## Skill: ${skill.name}\n${skill.body}`] : [];
  });
  const warnings = (member.ghost.skillsLeftOut ?? []).map((s) => ({
    type: 'warning' as const,
    message: s.reason === 'notFound' ? `Skill '${s.name}' was not found and is left out.` : `Skill '${s.name}' is not bound to the ${member.shell.shellType} shell and is left out.`,
  }));
  return { loadable, ...(catalogue ? { catalogue } : {}), preloaded, warnings };
}
