import { evaluateExpression } from '../tools/calculator.js';
import { cutChars } from '../prompt/text-forms.js';
import { estimateTokens } from '../context/token-budget.js';
import type {
  LanguageModelV3,
  LanguageModelV3CallOptions,
  LanguageModelV3GenerateResult,
  LanguageModelV3Message,
  LanguageModelV3StreamPart,
  LanguageModelV3StreamResult,
} from './language-model-types.js';

/**
 * The offline demo model (runtime.md §3.6): an in-process, deterministic provider with no network, so a
 * fresh install can chat at once and every feature can be shown offline. Its answers say what it is.
 */

export const DEMO_LABEL = '[Offline demo model — not a real AI]';
export const DEMO_NOTICE =
  'This demo only shows how Wegent works. To get real answers, add a Model (OpenAI, Anthropic, Google or any ' +
  'OpenAI-compatible endpoint) and choose it for your Bot, or ask an administrator to set it as the default.';
const SUMMARY_PROMPT_START = 'Summarise the conversation so far for your own later use.';
const WORDS_PER_CHUNK = 3;
const CHUNK_INTERVAL_MS = 30;

/** Provider metadata the demo model attaches to its finish, marking its usage as estimated. */
export const DEMO_PROVIDER_METADATA = { wegent: { estimated: true } } as const;

type DemoReply = { kind: 'text'; text: string } | { kind: 'tool-call'; expression: string };

function messageText(message: LanguageModelV3Message): string {
  if (typeof message.content === 'string') return message.content;
  return message.content.map((part) => (part.type === 'text' ? part.text : '')).join('');
}

/** The first arithmetic expression in a text (digits with at least one operator) that the calculator accepts. */
export function findArithmetic(text: string): string | null {
  const runs = text.match(/[0-9.\s+\-*/%^()]+/g) ?? [];
  for (const run of runs) {
    const candidate = run
      .trim()
      .replace(/^[.*/%^)\s]+/, '')
      .replace(/[.+\-*/%^(\s]+$/, '');
    if (!/\d\s*\)*\s*(\*\*|[-+*/%^])\s*\(*\s*[-+]?\.?\d/.test(candidate)) continue;
    try {
      evaluateExpression(candidate);
      return candidate;
    } catch {
      // not an expression after all; try the next run
    }
  }
  return null;
}

function plainAnswer(latestUser: string): string {
  return `${DEMO_LABEL} You wrote: "${cutChars(latestUser, 200)}". ${DEMO_NOTICE}`;
}

/** Parses the member names of a structured-request line: the text after `one of: ` less the final `.`. */
function namesOfLine(line: string): string[] | null {
  const at = line.indexOf('one of: ');
  if (at < 0) return null;
  let names = line.slice(at + 'one of: '.length);
  if (names.endsWith('.')) names = names.slice(0, -1);
  try {
    const parsed: unknown = JSON.parse(`[${names}]`);
    return Array.isArray(parsed) && parsed.length > 0 && parsed.every((n) => typeof n === 'string') ? (parsed as string[]) : null;
  } catch {
    return null;
  }
}

/** Decides the demo model's reply to a prompt (pure; exported for tests). */
export function demoReply(options: Pick<LanguageModelV3CallOptions, 'prompt' | 'tools'>): DemoReply {
  const prompt = options.prompt;
  const system = prompt
    .filter((m) => m.role === 'system')
    .map(messageText)
    .join('\n\n');
  const lastUserIndex = prompt.map((m) => m.role).lastIndexOf('user');
  const latestUser = lastUserIndex >= 0 ? messageText(prompt[lastUserIndex]!) : '';

  if (system.startsWith(SUMMARY_PROMPT_START)) return { kind: 'text', text: `Summary (demo): ${cutChars(latestUser, 200)}` };

  const lastLine = system.split('\n').pop() ?? '';
  if (lastLine.startsWith('"member" must be one of: ')) {
    const names = namesOfLine(lastLine);
    if (names) return { kind: 'text', text: JSON.stringify({ member: names[1] ?? names[0], reason: 'demo routing' }) };
  }
  const plan = /^Give 1 to (\d+) /.exec(lastLine);
  if (plan) {
    const names = namesOfLine(lastLine);
    if (names) {
      const subRequests = names.slice(0, Number(plan[1])).map((member) => ({ member, request: `Please help with: ${latestUser}` }));
      return { kind: 'text', text: JSON.stringify({ subRequests }) };
    }
  }

  // After a calculator round: answer with its result.
  const last = prompt[prompt.length - 1];
  if (last?.role === 'tool') {
    for (const part of last.content) {
      if (part.type !== 'tool-result' || part.toolName !== 'calculator') continue;
      const output = part.output;
      let value: unknown = output.type === 'json' || output.type === 'error-json' ? output.value : output.type === 'text' || output.type === 'error-text' ? output.value : undefined;
      if (typeof value === 'string') {
        try {
          value = JSON.parse(value);
        } catch {
          // keep the text
        }
      }
      const result = (value as { result?: unknown } | null)?.result;
      const error = (value as { error?: unknown } | null)?.error;
      if (result !== undefined) return { kind: 'text', text: `The result is ${String(result)}. ${DEMO_LABEL} ${DEMO_NOTICE}` };
      return { kind: 'text', text: `The calculator could not compute it: ${String(error ?? value)}. ${DEMO_LABEL} ${DEMO_NOTICE}` };
    }
  }

  const calculatorOffered = (options.tools ?? []).some((t) => t.name === 'calculator');
  const toolRoundAfterUser = prompt.slice(lastUserIndex + 1).some((m) => m.role === 'tool');
  if (calculatorOffered && !toolRoundAfterUser) {
    const expression = findArithmetic(latestUser);
    if (expression) return { kind: 'tool-call', expression };
  }

  let text = plainAnswer(latestUser);
  const speaker = /You are (.+?) in a discussion with /.exec(system);
  if (speaker && latestUser.includes(`\n\n**${speaker[1]}:** `)) text += '\n[DONE]';
  return { kind: 'text', text };
}

/** Pieces of about three words, whitespace kept, so the concatenation is the text. */
function chunkWords(text: string): string[] {
  const words = text.match(/\s*\S+/g) ?? [text];
  const chunks: string[] = [];
  for (let i = 0; i < words.length; i += WORDS_PER_CHUNK) chunks.push(words.slice(i, i + WORDS_PER_CHUNK).join(''));
  const trailing = /\s+$/.exec(text);
  if (trailing && chunks.length > 0) chunks[chunks.length - 1] += trailing[0];
  return chunks;
}

function estimateInput(options: LanguageModelV3CallOptions): number {
  let total = 0;
  for (const message of options.prompt) {
    if (typeof message.content === 'string') total += estimateTokens(message.content) + 4;
    else
      for (const part of message.content) {
        if (part.type === 'text' || part.type === 'reasoning') total += estimateTokens(part.text) + 4;
        else if (part.type === 'tool-call') total += estimateTokens(part.toolName + JSON.stringify(part.input)) + 4;
        else if (part.type === 'tool-result') total += estimateTokens(JSON.stringify(part.output)) + 4;
      }
  }
  if (options.tools && options.tools.length > 0) total += estimateTokens(JSON.stringify(options.tools));
  return total;
}

/** The offline demo model, implementing the AI SDK language-model interface in-process. */
export class DemoLanguageModel implements LanguageModelV3 {
  readonly specificationVersion = 'v3' as const;
  readonly provider = 'wegent.demo';
  readonly supportedUrls = {};
  #calls = 0;

  constructor(readonly modelId: string = 'demo-offline') {}

  async doStream(options: LanguageModelV3CallOptions): Promise<LanguageModelV3StreamResult> {
    const signal = options.abortSignal;
    if (signal?.aborted) throw new DOMException('This operation was aborted', 'AbortError');
    const reply = demoReply(options);
    const callId = ++this.#calls;
    const inputTokens = estimateInput(options);
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onAbort: (() => void) | undefined;

    const stream = new ReadableStream<LanguageModelV3StreamPart>({
      start: (controller) => {
        const finish = (outputText: string, finishReason: 'stop' | 'tool-calls') => {
          const outputTokens = estimateTokens(outputText);
          controller.enqueue({
            type: 'finish',
            finishReason: { unified: finishReason, raw: finishReason === 'stop' ? 'stop' : 'tool_calls' },
            usage: {
              inputTokens: { total: inputTokens, noCache: inputTokens, cacheRead: undefined, cacheWrite: undefined },
              outputTokens: { total: outputTokens, text: outputTokens, reasoning: undefined },
            },
            providerMetadata: DEMO_PROVIDER_METADATA,
          });
          controller.close();
          if (onAbort) signal?.removeEventListener('abort', onAbort);
        };
        onAbort = () => {
          if (timer) clearTimeout(timer);
          try {
            controller.error(new DOMException('This operation was aborted', 'AbortError'));
          } catch {
            // already closed
          }
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        controller.enqueue({ type: 'stream-start', warnings: [] });
        controller.enqueue({ type: 'response-metadata', id: `demo-${callId}`, modelId: this.modelId, timestamp: new Date(0) });
        if (reply.kind === 'tool-call') {
          const input = JSON.stringify({ expression: reply.expression });
          controller.enqueue({ type: 'tool-call', toolCallId: `demo-call-${callId}`, toolName: 'calculator', input });
          finish(`calculator${input}`, 'tool-calls');
          return;
        }
        const chunks = chunkWords(reply.text);
        controller.enqueue({ type: 'text-start', id: 'text-0' });
        let i = 0;
        const next = () => {
          if (signal?.aborted) return;
          if (i < chunks.length) {
            controller.enqueue({ type: 'text-delta', id: 'text-0', delta: chunks[i++]! });
            timer = setTimeout(next, CHUNK_INTERVAL_MS);
            return;
          }
          controller.enqueue({ type: 'text-end', id: 'text-0' });
          finish(reply.text, 'stop');
        };
        next();
      },
      cancel: () => {
        if (timer) clearTimeout(timer);
        if (onAbort) signal?.removeEventListener('abort', onAbort);
      },
    });
    return { stream };
  }

  async doGenerate(options: LanguageModelV3CallOptions): Promise<LanguageModelV3GenerateResult> {
    const { stream } = await this.doStream(options);
    const content: LanguageModelV3GenerateResult['content'] = [];
    let text = '';
    let result: Extract<LanguageModelV3StreamPart, { type: 'finish' }> | undefined;
    const reader = stream.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (value.type === 'text-delta') text += value.delta;
      else if (value.type === 'tool-call') content.push(value);
      else if (value.type === 'finish') result = value;
    }
    if (text !== '') content.unshift({ type: 'text', text });
    return {
      content,
      finishReason: result!.finishReason,
      usage: result!.usage,
      providerMetadata: result!.providerMetadata,
      warnings: [],
    };
  }
}
