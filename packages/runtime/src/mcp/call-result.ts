/** An MCP `tools/call` result as runtime.md §7 turns it into tool output. */
export interface McpCallResult {
  content?: unknown[];
  structuredContent?: unknown;
  isError?: boolean;
}

function contentText(item: unknown): string {
  const c = (item ?? {}) as Record<string, unknown>;
  switch (c.type) {
    case 'text':
      return typeof c.text === 'string' ? c.text : '';
    case 'image':
      return '[image omitted]';
    case 'audio':
      return '[audio omitted]';
    case 'resource_link':
      return typeof c.uri === 'string' ? c.uri : '';
    case 'resource': {
      const r = (c.resource ?? {}) as Record<string, unknown>;
      if (typeof r.text === 'string') return r.text;
      return typeof r.uri === 'string' ? r.uri : '';
    }
    default:
      return '';
  }
}

/**
 * The text of a result: its `content` items in order joined with `\n`; only when `content` is empty,
 * the JSON of `structuredContent` (none: empty text).
 */
export function mcpResultText(result: McpCallResult): string {
  const content = Array.isArray(result.content) ? result.content : [];
  if (content.length > 0) return content.map(contentText).join('\n');
  if (result.structuredContent === undefined) return '';
  return JSON.stringify(result.structuredContent) ?? '';
}
