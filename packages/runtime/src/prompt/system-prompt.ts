/** The system prompt of a member turn (runtime.md §4.1). */
export interface SystemPromptParts {
  /** 1. The Ghost's systemPrompt. */
  ghostSystemPrompt: string;
  /** 2. The member's prompt from the Team. */
  memberPrompt?: string;
  /** 3. The mode note (runtime.md §9). */
  modeNote?: string;
  /** 4. The run's instructions. */
  instructions?: string;
  /** 5. The skills catalogue (runtime.md §8). */
  skillsCatalogue?: string;
  /** 6. Bodies of preloaded skills, one part each. */
  preloadedSkills?: string[];
  /** 7. The sandbox note. */
  sandboxNote?: string;
  /** 8. Today, from `host.now()`. */
  now: Date;
}

/** Joins the parts in order: each loses its trailing whitespace, empty ones are left out, the rest joined with a blank line. */
export function assembleSystemPrompt(parts: SystemPromptParts): string {
  const ordered = [
    parts.ghostSystemPrompt,
    parts.memberPrompt,
    parts.modeNote,
    parts.instructions,
    parts.skillsCatalogue,
    ...(parts.preloadedSkills ?? []),
    parts.sandboxNote,
    `Current date: ${parts.now.toISOString().slice(0, 10)} (UTC).`,
  ];
  return joinPromptParts(ordered);
}

/** The §4.1 join: each part loses its trailing whitespace, empty parts are left out, the rest joined with a blank line. */
export function joinPromptParts(parts: ReadonlyArray<string | undefined>): string {
  return parts
    .map((part) => (part ?? '').trimEnd())
    .filter((part) => part !== '')
    .join('\n\n');
}

/**
 * The system prompt of a structured-output call (runtime.md §9 step 1): the leader's Ghost prompt, member
 * prompt and run instructions, then the decision text; nothing else.
 */
export function structuredSystemPrompt(parts: { ghostSystemPrompt: string; memberPrompt?: string; instructions?: string; decisionText: string }): string {
  return joinPromptParts([parts.ghostSystemPrompt, parts.memberPrompt, parts.instructions, parts.decisionText]);
}
