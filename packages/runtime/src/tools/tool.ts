import type { ToolSource } from '@wegent/core';
import { z } from 'zod';

/** What a tool gets while it runs. */
export interface ToolContext {
  /** Aborted when the run is cancelled or the tool times out. */
  signal: AbortSignal;
  /** Streams output into the tool's block as it comes (`tool.output`, runtime.md §13.2). */
  output?(delta: string): void;
}

/** A tool the model can call (runtime.md §5–§8). */
export interface RuntimeTool<Input = unknown> {
  /** The name shown to models. */
  name: string;
  description: string;
  source: ToolSource;
  mcpServer?: string;
  /** Validates the arguments; its JSON Schema is what models see. */
  inputSchema: z.ZodType<Input>;
  /** The JSON Schema models see, when it does not come from `inputSchema` (MCP tools: the server's own). */
  parameters?: Record<string, unknown>;
  /** Time limit of one call; `timed out after <n> s` when exceeded. */
  timeoutMs: number;
  /** Sandbox tools run one after another instead of concurrently (runtime.md §5). */
  sequential?: boolean;
  /** Returns a string (given to the model as is) or a value (given as its JSON); throws `ToolError` for a tool error. */
  execute(input: Input, context: ToolContext): Promise<unknown>;
}

/** A tool error: becomes `{"error":"<message>"}` for the model, never a turn error. */
export class ToolError extends Error {
  override readonly name = 'ToolError';
}

/** The JSON Schema of a tool's arguments as sent to providers. */
export function toolParameters(tool: RuntimeTool): Record<string, unknown> {
  if (tool.parameters) return tool.parameters;
  const schema = z.toJSONSchema(tool.inputSchema, { target: 'draft-7', io: 'input' }) as Record<string, unknown>;
  delete schema.$schema;
  return schema;
}
