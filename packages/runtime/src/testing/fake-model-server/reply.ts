// Plays one scripted reply over the wire in a provider's dialect.
import { FakeScriptError, type Dialect, type OutputPart, type ReplyContext } from './dialect.js';
import type { FakeError, FakeStep } from './script.js';
import type { ReplyWire } from './wire.js';

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  connection: 'keep-alive',
};

/** SDKs retry these statuses; a short `retry-after-ms` keeps retry tests fast. */
function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

/** Answers with the provider's HTTP error. */
export async function sendError(wire: ReplyWire, dialect: Pick<Dialect, 'errorAnswer'>, error: FakeError, model: string | undefined): Promise<void> {
  const answer = dialect.errorAnswer(error, model);
  const retryAfterMs = error.retryAfterMs === undefined ? (isRetryableStatus(error.status) ? 10 : null) : error.retryAfterMs;
  await sendJson(wire, answer.status, answer.body, {
    ...(retryAfterMs !== null ? { 'retry-after-ms': String(retryAfterMs) } : {}),
    ...answer.headers,
    ...error.headers,
  });
}

export async function sendJson(wire: ReplyWire, status: number, body: unknown, headers: Record<string, string> = {}): Promise<void> {
  wire.writeHead(status, { 'content-type': 'application/json', ...headers });
  await wire.end(JSON.stringify(body));
}

function outputPart(step: FakeStep): OutputPart | undefined {
  if ('text' in step) return { kind: 'text', text: step.text };
  if ('reasoning' in step) return { kind: 'reasoning', text: step.reasoning };
  if ('toolCall' in step) return { kind: 'toolCall', call: step.toolCall };
  if ('json' in step) return { kind: 'json', value: step.json };
  return undefined;
}

function stepDelay(step: FakeStep): number | undefined {
  return 'delayMs' in step ? step.delayMs : undefined;
}

/** Plays `steps` as an SSE stream: leading delayHeadersMs/error/cut/hang steps act before the headers, the rest after. */
export async function playStream(wire: ReplyWire, dialect: Dialect, ctx: ReplyContext, steps: readonly FakeStep[]): Promise<void> {
  const parts = steps.map(outputPart).filter((p): p is OutputPart => p !== undefined);
  let i = 0;
  for (; i < steps.length; i++) {
    const step = steps[i]!;
    if ('delayHeadersMs' in step) {
      await wire.sleep(step.delayHeadersMs);
    } else if ('error' in step) {
      await wire.sleep(step.delayMs);
      return sendError(wire, dialect, step.error, ctx.model);
    } else if ('cut' in step) {
      await wire.sleep(step.delayMs);
      return wire.cut();
    } else if ('hang' in step) {
      return wire.hang();
    } else {
      break;
    }
  }
  try {
    dialect.checkParts?.(parts);
  } catch (error) {
    if (error instanceof FakeScriptError) return sendError(wire, dialect, { status: 500, message: error.message }, ctx.model);
    throw error;
  }
  wire.writeHead(200, SSE_HEADERS);
  const encoder = dialect.openStream(ctx);
  await wire.write(encoder.open());
  for (; i < steps.length; i++) {
    const step = steps[i]!;
    const part = outputPart(step);
    if (part !== undefined) {
      await wire.sleep(stepDelay(step));
      await wire.write(encoder.part(part), 'splitBytes' in step && step.splitBytes === true);
    } else if ('error' in step) {
      await wire.sleep(step.delayMs);
      await wire.write(encoder.error(step.error));
      return wire.end();
    } else if ('cut' in step) {
      await wire.sleep(step.delayMs);
      return wire.cut();
    } else if ('hang' in step) {
      return wire.hang();
    } else if ('delayHeadersMs' in step) {
      await wire.sleep(step.delayHeadersMs);
    } else {
      await wire.sleep(stepDelay(step));
    }
  }
  await wire.write(encoder.close());
  await wire.end();
}

/** Plays `steps` as one JSON answer: delays add up, an error answers instead, a cut sends half the body. */
export async function playJson(wire: ReplyWire, dialect: Dialect, ctx: ReplyContext, steps: readonly FakeStep[]): Promise<void> {
  const parts: OutputPart[] = [];
  for (const step of steps) {
    const part = outputPart(step);
    if (part !== undefined) {
      await wire.sleep(stepDelay(step));
      parts.push(part);
    } else if ('error' in step) {
      await wire.sleep(step.delayMs);
      return sendError(wire, dialect, step.error, ctx.model);
    } else if ('cut' in step) {
      await wire.sleep(step.delayMs);
      if (parts.length === 0) return wire.cut();
      const text = JSON.stringify(dialect.completeBody(parts, ctx));
      const bytes = Buffer.byteLength(text);
      wire.writeHead(200, { 'content-type': 'application/json', 'content-length': String(bytes) });
      return wire.writeThenCut(text, Math.floor(bytes / 2));
    } else if ('hang' in step) {
      return wire.hang();
    } else if ('delayHeadersMs' in step) {
      await wire.sleep(step.delayHeadersMs);
    } else {
      await wire.sleep(stepDelay(step));
    }
  }
  let body: unknown;
  try {
    body = dialect.completeBody(parts, ctx);
  } catch (error) {
    if (error instanceof FakeScriptError) return sendError(wire, dialect, { status: 500, message: error.message }, ctx.model);
    throw error;
  }
  await sendJson(wire, 200, body);
}
