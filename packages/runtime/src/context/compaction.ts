import type { Block } from '@wegent/core';
import type { ModelMessage } from 'ai';
import { capToolOutput } from './tool-output-cap.js';
import { estimatePrompt, estimateTokens, type OfferedToolShape, type TokenEstimator } from './token-budget.js';
import { turnError, type TurnError } from '../models/model-errors.js';
import type { TurnEventInput } from '../run/event-sink.js';

/** Compaction of a turn's prompt (runtime.md §10.4). */

/** The summarisation call's system prompt, to the byte (§10.4 step 3). */
export const SUMMARY_SYSTEM_PROMPT =
  "Summarise the conversation so far for your own later use. Keep facts, decisions, open questions, the user's preferences, names of files and the results of tool calls. Be brief.";
/** How a checkpoint's summary enters a prompt (§4.3, §10.4 step 4). */
export const SUMMARY_PREFIX = 'Summary of the earlier conversation:\n';
/** The summarisation call's limits (§10.4 step 3). */
export const SUMMARY_MAX_OUTPUT_TOKENS = 2000;
export const SUMMARY_TIMEOUT_MS = 120_000;
/** `WEGENT_COMPACTION_TRIGGER`, `WEGENT_COMPACTION_TARGET` defaults (§16). */
export const DEFAULT_COMPACTION_TRIGGER = 0.9;
export const DEFAULT_COMPACTION_TARGET = 0.7;
/** The share of the budget the kept tail of earlier messages may take (§10.4 step 1). */
const TAIL_SHARE = 0.25;
/** The target after a provider's overflow answer (§10.6). */
const OVERFLOW_TARGET = 0.5;
/** Step 2's cut of this turn's tool results (§10.1 with L = 3,000 bytes). */
const SHORTENED_RESULT_BYTES = 3000;
/** Step 7(c)'s limits, tried in order. */
const PIECE_LIMITS = [32_000, 16_000, 8_000, 4_000, 2_000, 1_000];

/**
 * The earlier conversation at the start of a turn's messages (the history of §4.3): how many of the
 * first messages it is, and per message the stored seq it came from (none for a checkpoint summary).
 */
export interface EarlierMessages {
  count: number;
  seqs: Array<number | undefined>;
  /** The first message is the latest checkpoint's summary, covering stored messages up to `coversUpToSeq`. */
  checkpoint?: { coversUpToSeq: number | undefined };
}

export type SummaryResult = { ok: true; text: string } | { ok: false; code: string };

export interface ContextGuardOptions {
  system: string;
  budget: number;
  window: number;
  estimator: TokenEstimator;
  trigger?: number;
  target?: number;
  earlier?: EarlierMessages;
  /** The run's user message, for the CONTEXT_TOO_LONG breakdown. */
  userMessage?: string;
  modelName: string;
  /** One summarisation call (no tools, 2,000 output tokens, 120 s). */
  summarise(input: string): Promise<SummaryResult>;
  /** Persists a checkpoint (`host.saveCompaction`). */
  save?(summary: string, coversUpToSeq: number): void | Promise<void>;
  emit(event: TurnEventInput): Promise<void>;
  now(): Date;
}

export type GuardResult = { ok: true; messages: ModelMessage[]; rawEstimate: number; usedTokens: number } | { ok: false; error: TurnError };

/** `User: <text>` / `Assistant: <text>`; a checkpoint summary as it is (§10.4 step 3). */
function summaryLine(message: ModelMessage, isCheckpoint: boolean): string {
  const text = typeof message.content === 'string' ? message.content : message.content.map((p) => (p.type === 'text' ? p.text : '')).join('');
  if (isCheckpoint) return text;
  return `${message.role === 'assistant' ? 'Assistant' : 'User'}: ${text}`;
}

/**
 * The guard that runs before every model call of a turn (runtime.md §10): compacts the earlier
 * conversation into a summary when the prompt passes the trigger, truncates in an emergency, and
 * reports the context meter.
 */
export class ContextGuard {
  readonly #o: ContextGuardOptions;
  #earlier: EarlierMessages;
  #compacted = false;
  #warned = false;
  #blocks = 0;

  constructor(options: ContextGuardOptions) {
    this.#o = options;
    this.#earlier = options.earlier ?? { count: 0, seqs: [] };
  }

  /** Whether this turn's prompt has been compacted. */
  get compacted(): boolean {
    return this.#compacted;
  }

  #estimate(messages: readonly ModelMessage[], tools: readonly OfferedToolShape[]): number {
    return this.#o.estimator.scale(estimatePrompt(this.#o.system, messages, tools));
  }

  /**
   * Checks the prompt of the next call. `working` are the turn's message lists that start with the
   * earlier conversation: a compaction replaces that prefix in each of them, so later calls start from
   * the summary too. Returns the messages to send, or CONTEXT_TOO_LONG.
   */
  async beforeCall(callMessages: ModelMessage[], tools: readonly OfferedToolShape[], working: ModelMessage[][], options: { overflow?: boolean } = {}): Promise<GuardResult> {
    const { budget } = this.#o;
    const trigger = this.#o.trigger ?? DEFAULT_COMPACTION_TRIGGER;
    const target = this.#o.target ?? DEFAULT_COMPACTION_TARGET;
    // After a provider's "context length exceeded" (§10.6): compact again towards 50 %.
    const goal = (options.overflow ? OVERFLOW_TARGET : target) * budget;
    let messages = callMessages;
    let estimate = this.#estimate(messages, tools);
    if (options.overflow || estimate > trigger * budget) {
      // Step 2: when this run's own messages are what overflows, its oldest tool results are cut first.
      if (this.#shortenToolResults(messages, tools, goal)) estimate = this.#estimate(messages, tools);
      if (options.overflow || estimate > goal) {
        const compacted = await this.#compact(messages, tools, estimate, TAIL_SHARE * budget * (goal / (target * budget)));
        if (compacted) {
          // The call's list may be one of `working`: build it before those change.
          messages = [...compacted.earlier, ...messages.slice(compacted.removed)];
          for (const list of working) list.splice(0, compacted.removed, ...compacted.earlier);
          this.#earlier = compacted.next;
          estimate = this.#estimate(messages, tools);
        }
      }
    }
    const limit = options.overflow ? goal : budget;
    if (estimate > limit) {
      const truncated = await this.#truncate(messages, tools, limit);
      if (!truncated.ok) return truncated;
      messages = truncated.messages;
      estimate = this.#estimate(messages, tools);
    }
    const rawEstimate = estimatePrompt(this.#o.system, messages, tools);
    await this.#o.emit({ type: 'context.updated', usedTokens: estimate, budgetTokens: budget, contextWindow: this.#o.window, compacted: this.#compacted });
    return { ok: true, messages, rawEstimate, usedTokens: estimate };
  }

  /**
   * Step 2: while the system prompt and this run's messages alone are over `goal`, the oldest of this
   * turn's tool results longer than 3,000 bytes is cut (§10.1 with L = 3,000). The result parts are
   * changed in place, so the turn keeps the shorter form. Returns whether anything was cut.
   */
  #shortenToolResults(messages: ModelMessage[], tools: readonly OfferedToolShape[], goal: number): boolean {
    const own = messages.slice(this.#earlier.count);
    let cut = false;
    for (const message of own) {
      if (message.role !== 'tool') continue;
      for (const part of message.content) {
        if (this.#estimate(own, tools) <= goal) return cut;
        if (part.type !== 'tool-result' || (part.output.type !== 'text' && part.output.type !== 'error-text')) continue;
        const shorter = capToolOutput(part.output.value, SHORTENED_RESULT_BYTES);
        if (shorter === part.output.value) continue;
        part.output = { ...part.output, value: shorter };
        cut = true;
      }
    }
    return cut;
  }

  /** Steps 1 and 3–6: summarise the earlier messages before the tail. Undefined when there is nothing to summarise or the call failed. */
  async #compact(
    messages: ModelMessage[],
    tools: readonly OfferedToolShape[],
    beforeTokens: number,
    /** 25 % of the budget; less after a provider overflow, in proportion to the lower target. */
    tailTokensMax: number,
  ): Promise<{ removed: number; earlier: ModelMessage[]; next: EarlierMessages } | undefined> {
    const { budget, estimator } = this.#o;
    const earlier = messages.slice(0, this.#earlier.count);
    const hasCheckpoint = this.#earlier.checkpoint !== undefined;
    // Step 1: the latest earlier messages that fit in 25 % of the budget stay as they are.
    let tailStart = earlier.length;
    let tailTokens = 0;
    while (tailStart > (hasCheckpoint ? 1 : 0)) {
      const cost = estimator.scale(estimatePrompt('', [earlier[tailStart - 1]!]) - 4);
      if (tailTokens + cost > tailTokensMax) break;
      tailTokens += cost;
      tailStart--;
    }
    const toSummarise = earlier.slice(0, tailStart);
    const newlySummarised = hasCheckpoint ? toSummarise.length - 1 : toSummarise.length;
    if (newlySummarised <= 0) return undefined; // only this run's own messages overflow: emergency truncation handles it

    // Step 3: one call with the texts joined; over budget, the oldest are left out of it (still summarised away).
    const lines = toSummarise.map((m, i) => summaryLine(m, hasCheckpoint && i === 0));
    const fits = (parts: string[]) => estimateTokens(SUMMARY_SYSTEM_PROMPT) + 4 + estimateTokens(parts.join('\n\n')) + 4 <= budget;
    const head = hasCheckpoint ? [lines[0]!] : [];
    let rest = lines.slice(head.length);
    while (rest.length > 1 && !fits([...head, ...rest])) rest = rest.slice(1);
    const input = [...head, ...rest].join('\n\n');
    const summary = await this.#o.summarise(input);
    if (!summary.ok) {
      if (summary.code === 'CANCELLED') return undefined; // the run was cancelled: the turn ends, nothing to warn about
      await this.#warn(`The earlier conversation could not be summarised (${summary.code}); older messages may be left out.`);
      return undefined;
    }

    // Step 4: system prompt, the summary as a user message, the tail (the caller keeps this run's messages).
    const summaryMessage: ModelMessage = { role: 'user', content: SUMMARY_PREFIX + summary.text };
    const kept = earlier.slice(tailStart);
    const keptSeqs = this.#earlier.seqs.slice(tailStart);
    const coversUpToSeq = this.#earlier.seqs.slice(0, tailStart).reduce<number | undefined>((max, s) => (s !== undefined && (max === undefined || s > max) ? s : max), this.#earlier.checkpoint?.coversUpToSeq);
    const next: EarlierMessages = { count: kept.length + 1, seqs: [undefined, ...keptSeqs], checkpoint: { coversUpToSeq } };
    const afterMessages = [summaryMessage, ...kept, ...messages.slice(earlier.length)];
    const afterTokens = this.#estimate(afterMessages, tools);
    this.#compacted = true;

    // Step 5: the checkpoint, so later runs load history from it (§4.3).
    if (coversUpToSeq !== undefined) await this.#o.save?.(summary.text, coversUpToSeq);
    // Step 6: the block (the meter follows, with compacted: true).
    const block: Block = {
      id: `compaction-${++this.#blocks}`,
      type: 'compaction',
      status: 'completed',
      createdAt: this.#o.now().toISOString(),
      compaction: { beforeTokens, afterTokens, summarizedMessages: newlySummarised },
    };
    await this.#o.emit({ type: 'block.added', block });
    return { removed: earlier.length, earlier: [summaryMessage, ...kept], next };
  }

  async #warn(message: string): Promise<void> {
    const block: Block = { id: `context-warning-${++this.#blocks}`, type: 'warning', status: 'completed', createdAt: this.#o.now().toISOString(), message };
    await this.#o.emit({ type: 'block.added', block });
  }

  /**
   * Step 7, emergency truncation for this call: drop earlier messages oldest first, then this turn's
   * tool rounds oldest first (never the latest); still too long → CONTEXT_TOO_LONG.
   */
  async #truncate(callMessages: ModelMessage[], tools: readonly OfferedToolShape[], limit: number): Promise<GuardResult> {
    const { budget } = this.#o;
    let messages = [...callMessages];
    let earlierCount = this.#earlier.count;
    let changed = false;
    const over = () => this.#estimate(messages, tools) > limit;
    // (a) the earlier messages, oldest first.
    while (over() && earlierCount > 0) {
      messages.splice(0, 1);
      earlierCount--;
      changed = true;
    }
    // (b) this turn's tool rounds (an assistant message with tool calls and the tool message after it), oldest first, never the latest.
    const rounds = () => {
      const starts: number[] = [];
      for (let i = earlierCount; i < messages.length - 1; i++) {
        const m = messages[i]!;
        if (m.role === 'assistant' && typeof m.content !== 'string' && m.content.some((p) => p.type === 'tool-call') && messages[i + 1]!.role === 'tool') starts.push(i);
      }
      return starts;
    };
    for (let starts = rounds(); over() && starts.length > 1; starts = rounds()) {
      messages = [...messages.slice(0, starts[0]!), ...messages.slice(starts[0]! + 2)];
      changed = true;
    }
    // (c) each result of the latest round cut to the first of 32,000 … 1,000 bytes that fits.
    const latest = rounds().at(-1);
    if (over() && latest !== undefined) {
      const toolMessage = messages[latest + 1]!;
      for (const bytes of PIECE_LIMITS) {
        const candidate: ModelMessage = {
          ...toolMessage,
          content: (toolMessage.content as Extract<ModelMessage, { role: 'tool' }>['content']).map((part) =>
            part.type === 'tool-result' && (part.output.type === 'text' || part.output.type === 'error-text') ? { ...part, output: { ...part.output, value: capToolOutput(part.output.value, bytes) } } : part,
          ),
        } as ModelMessage;
        messages = [...messages.slice(0, latest + 1), candidate, ...messages.slice(latest + 2)];
        changed = true;
        if (!over()) break;
      }
    }
    if (changed && !this.#warned) {
      this.#warned = true;
      await this.#warn(`Part of the input was left out or shortened to fit the context of Model '${this.#o.modelName}'.`);
    }
    const total = this.#estimate(messages, tools);
    if (total <= budget) return { ok: true, messages, rawEstimate: 0, usedTokens: 0 };
    const scale = (n: number) => this.#o.estimator.scale(n);
    const systemAndTools = scale(estimatePrompt(this.#o.system, [], tools));
    const userMessage = this.#o.userMessage;
    const hasUser =
      userMessage !== undefined && messages.slice(earlierCount).some((m) => m.role === 'user' && typeof m.content === 'string' && m.content.includes(userMessage));
    const user = hasUser ? scale(estimateTokens(userMessage) + 4) : 0;
    const other = Math.max(0, total - systemAndTools - user);
    return {
      ok: false,
      error: turnError(
        'CONTEXT_TOO_LONG',
        `the input is too long for Model '${this.#o.modelName}': about ${systemAndTools + user + other} tokens (system prompt and tools ${systemAndTools}, user message ${user}, other input ${other}), the limit is ${budget}`,
      ),
    };
  }
}
