import type { RequestedToolCall } from '../models/model-call.js';
import { BLOCK_OUTPUT_MAX_BYTES, capToolOutput, cutToBytes, toolResultText } from '../context/tool-output-cap.js';
import type { TurnEventInput } from '../run/event-sink.js';
import { ToolError, type RuntimeTool } from './tool.js';

/** What one tool call produced, as the model will see it. */
export interface ToolCallOutcome {
  call: RequestedToolCall;
  blockId: string;
  /** The result text given to the model (capped, runtime.md §10.1). */
  modelText: string;
  isError: boolean;
  status: 'completed' | 'failed' | 'cancelled';
}


export interface ToolRoundOptions {
  tools: ReadonlyMap<string, RuntimeTool>;
  /** The run's signal (cancel). */
  signal: AbortSignal;
  /** `L` of §10.1 in bytes. */
  outputLimitBytes: number;
  /** At most this many calls run at once (runtime.md §5: 4). */
  concurrency?: number;
  nextBlockId(): string;
  emit(event: TurnEventInput): Promise<void>;
}

/** The §5 message of invalid arguments: `not a JSON object`, else the first zod issue as `<path>: <message>`. */
function validate(tool: RuntimeTool, input: unknown): { ok: true; value: unknown } | { ok: false; error: string } {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) return { ok: false, error: 'invalid arguments: not a JSON object' };
  const parsed = tool.inputSchema.safeParse(input);
  if (parsed.success) return { ok: true, value: parsed.data };
  const issue = parsed.error.issues[0]!;
  const path = issue.path.length === 0 ? '(root)' : issue.path.map(String).join('.');
  return { ok: false, error: `invalid arguments: ${path}: ${issue.message}` };
}

function abortPromise(signal: AbortSignal): Promise<'aborted'> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve('aborted');
    else signal.addEventListener('abort', () => resolve('aborted'), { once: true });
  });
}

/** Runs one round of tool calls (concurrently, up to 4; sequential tools one after another) and reports blocks. */
export async function runToolRound(calls: readonly RequestedToolCall[], options: ToolRoundOptions): Promise<ToolCallOutcome[]> {
  const outcomes: Array<ToolCallOutcome | undefined> = new Array(calls.length);
  const runAbort = abortPromise(options.signal);
  let sequentialChain: Promise<unknown> = Promise.resolve();

  const runOne = async (call: RequestedToolCall, index: number): Promise<void> => {
    const tool = options.tools.get(call.toolName);
    const blockId = options.nextBlockId();
    const started = Date.now();
    await options.emit({
      type: 'tool.started',
      blockId,
      toolCallId: call.toolCallId,
      toolName: call.toolName,
      toolSource: tool?.source ?? 'builtin',
      ...(tool?.mcpServer ? { mcpServer: tool.mcpServer } : {}),
      input: call.input,
    });
    let result: { ok: true; value: unknown } | { ok: false; error: string } | 'cancelled';
    if (!tool) result = { ok: false, error: `unknown tool ${call.toolName}` };
    else {
      const checked = validate(tool, call.input);
      result = checked.ok ? await execute(tool, checked.value, options.signal, runAbort, (delta) => void options.emit({ type: 'tool.output', blockId, delta })) : checked;
    }
    const status = result === 'cancelled' ? 'cancelled' : result.ok ? 'completed' : 'failed';
    const fullText = result === 'cancelled' ? JSON.stringify({ error: 'cancelled' }) : toolResultText(result);
    outcomes[index] = { call, blockId, modelText: capToolOutput(fullText, options.outputLimitBytes), isError: status !== 'completed', status };
    await options.emit({
      type: 'tool.finished',
      blockId,
      output: cutToBytes(result === 'cancelled' ? 'cancelled' : result.ok ? fullText : result.error, BLOCK_OUTPUT_MAX_BYTES),
      isError: status !== 'completed',
      status,
      durationMs: Date.now() - started,
    });
  };

  let nextIndex = 0;
  const worker = async () => {
    while (nextIndex < calls.length && !options.signal.aborted) {
      const index = nextIndex++;
      const call = calls[index]!;
      if (options.tools.get(call.toolName)?.sequential) {
        const run = sequentialChain.then(() => (options.signal.aborted ? undefined : runOne(call, index)));
        sequentialChain = run.catch(() => {});
        await run;
      } else {
        await runOne(call, index);
      }
    }
  };
  const workers = Array.from({ length: Math.min(options.concurrency ?? 4, calls.length) }, () => worker());
  // On cancel every running call settles at once as `cancelled`, so this wait is short.
  await Promise.all(workers);
  return outcomes.filter((o): o is ToolCallOutcome => o !== undefined);
}

async function execute(tool: RuntimeTool, input: unknown, runSignal: AbortSignal, runAbort: Promise<'aborted'>, output: (delta: string) => void): Promise<{ ok: true; value: unknown } | { ok: false; error: string } | 'cancelled'> {
  const controller = new AbortController();
  const onAbort = () => controller.abort();
  runSignal.addEventListener('abort', onAbort, { once: true });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, tool.timeoutMs);
  const timeoutPromise = new Promise<'timeout'>((resolve) => controller.signal.addEventListener('abort', () => timedOut && resolve('timeout'), { once: true }));
  try {
    const run = tool.execute(input, { signal: controller.signal, output }).then(
      (value) => ({ ok: true as const, value }),
      (err: unknown) => {
        if (err instanceof ToolError) return { ok: false as const, error: err.message };
        if (err instanceof Error && err.name === 'AbortError') return { ok: false as const, error: 'aborted' };
        return { ok: false as const, error: err instanceof Error ? err.message : String(err) };
      },
    );
    const outcome = await Promise.race([run, runAbort, timeoutPromise]);
    if (outcome === 'aborted' || runSignal.aborted) return 'cancelled';
    if (outcome === 'timeout' || timedOut) return { ok: false, error: `timed out after ${Math.round(tool.timeoutMs / 1000)} s` };
    return outcome;
  } finally {
    clearTimeout(timer);
    runSignal.removeEventListener('abort', onAbort);
  }
}
