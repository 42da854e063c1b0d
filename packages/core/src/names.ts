/** Resource and namespace names (resources.md §4). */
export const NAME_PATTERN = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/;
export const NAME_RULE_MESSAGE =
  "must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";

export function isValidName(value: unknown): value is string {
  return typeof value === 'string' && NAME_PATTERN.test(value);
}

/** The case-folded form used for the "names may not differ only by case" rule. */
export function foldName(name: string): string {
  return name.toLowerCase();
}
