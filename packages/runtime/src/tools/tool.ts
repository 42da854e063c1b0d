import type { ToolSource } from '@wegent/core';
import { z } from 'zod';

/** What a tool gets while it runs. */
export interface ToolContext {
  /** Aborted when the run is cancelled or the tool times out. */
  signal: AbortSignal;
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
  const schema = z.toJSONSchema(tool.inputSchema, { target: 'draft-7', io: 'input' }) as Record<string, unknown>;
  delete schema.$schema;
  return schema;
}
