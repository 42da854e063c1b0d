import { createHash } from 'node:crypto';

const MAX_NAME = 64;

/**
 * The name a model sees for an MCP tool (runtime.md §7): `mcp__<server>__<tool>`, characters outside
 * `[A-Za-z0-9_-]` become `_`, names over 64 characters are shortened and suffixed with a short hash of
 * the full name, and a name already taken gets a numeric suffix (`_2`, `_3`, ...).
 */
export function mcpToolName(server: string, tool: string, taken: ReadonlySet<string>): string {
  const full = `mcp__${server}__${tool}`;
  let name = full.replace(/[^A-Za-z0-9_-]/g, '_');
  if (name.length > MAX_NAME) {
    const hash = createHash('sha256').update(full).digest('hex').slice(0, 8);
    name = `${name.slice(0, MAX_NAME - hash.length - 1)}_${hash}`;
  }
  if (!taken.has(name)) return name;
  for (let n = 2; ; n++) {
    const suffix = `_${n}`;
    const candidate = `${name.slice(0, MAX_NAME - suffix.length)}${suffix}`;
    if (!taken.has(candidate)) return candidate;
  }
}
