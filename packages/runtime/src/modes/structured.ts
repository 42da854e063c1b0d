import type { Block } from '@wegent/core';
import { jsonSchema, Output, type LanguageModel, type ModelMessage } from 'ai';
import { z } from 'zod';
import { contextBudget, estimatePrompt, estimateTokens } from '../context/token-budget.js';
import { callModel, type ModelCallRequest, type ModelCallResult } from '../models/model-call.js';
import { mapModelError, turnError, type TurnError } from '../models/model-errors.js';
import { createLanguageModel, UnsupportedProtocolError } from '../models/providers.js';
import { modelAddressPolicy } from '../network/address-policy.js';
import { createPinnedFetch, type PinnedFetch } from '../network/pinned-http.js';
import { historyMessages } from '../prompt/history.js';
import { jsonNames, repairMessage } from '../prompt/mode-prompts.js';
import { structuredSystemPrompt } from '../prompt/system-prompt.js';
import { cutChars } from '../prompt/text-forms.js';
import { startMemberTurn, type RunContext } from '../run/member-step.js';
import { DEFAULT_MODEL_MAX_RETRIES, DEFAULT_MODEL_TIMEOUT_SECONDS } from '../run/runtime-config.js';
import type { ModelConnection } from '../run/types.js';
import { callUsage } from '../turn/call-usage.js';
import { cancelReasonOf } from '../turn/member-turn.js';

/** A validated answer, or the `<error>` of runtime.md §9 step 3. */
export type Validation<T> = { ok: true; value: T } | { ok: false; error: string };

/** What a structured-output turn decides (route or plan) and how it is checked and shown. */
export interface StructuredDecision<T> {
  purpose: 'route' | 'plan';
  memberIndex: number;
  /** The decision text of §9.3 / §9.4. */
  decisionText: string;
  /** The native JSON schema (every property required, no others, `member` an enum). */
  schema: Record<string, unknown>;
  validate(answer: string): Validation<T>;
  /** The turn's block: from the decision, or from the second `<error>` (fallback). */
  block(result: Validation<T>): Block;
}

export type StructuredOutcome<T> =
  | { status: 'decided'; value: T }
  | { status: 'fallback'; error: string }
  | { status: 'failed'; error: TurnError }
  | { status: 'cancelled' };

/** Whether the protocol is known to honour a native schema (runtime.md §9 step 2). */
function usesNativeSchema(model: ModelConnection): boolean {
  return (model.protocol === 'openai' || model.protocol === 'anthropic') && model.capabilities?.structuredOutput !== false;
}

/**
 * Runs a structured-output turn (runtime.md §9): one call without tools and at most one repair call,
 * streamed but silent (no text or reasoning deltas); the result is the turn's block and the turn's
 * message stays empty. A model error fails the turn (and, for the caller, the run).
 */
export async function runStructuredTurn<T>(ctx: RunContext, decision: StructuredDecision<T>): Promise<StructuredOutcome<T>> {
  const opened = await startMemberTurn(ctx, { memberIndex: decision.memberIndex, purpose: decision.purpose, visible: false });
  if ('ended' in opened) {
    const r = opened.ended.result;
    return r.status === 'failed' ? { status: 'failed', error: r.error } : { status: 'cancelled' };
  }
  const { reporter, member, model, finish } = opened.started;
  const { request, config } = ctx;
  const turnTimeout = new AbortController();
  const turnTimer = setTimeout(() => turnTimeout.abort(), config.turnTimeoutMs);
  const signal = AbortSignal.any([ctx.signal, turnTimeout.signal]);
  let pinned: PinnedFetch | undefined;

  const fail = async (error: TurnError): Promise<StructuredOutcome<T>> => {
    await reporter.emit({ type: 'turn.failed', code: error.code, message: error.message, retryable: error.retryable, text: '' });
    await finish({ status: 'failed', error, text: '' });
    return { status: 'failed', error };
  };
  const cancel = async (): Promise<StructuredOutcome<T>> => {
    const reason = cancelReasonOf(ctx.signal);
    await reporter.emit({ type: 'turn.cancelled', reason, text: '' });
    await finish({ status: 'cancelled', reason, text: '' });
    return { status: 'cancelled' };
  };

  try {
    let languageModel: LanguageModel;
    try {
      if (model.protocol !== 'demo') {
        pinned = createPinnedFetch(modelAddressPolicy(model.trustedOwner, { privateHostsAllow: config.privateHostsAllow, modelAllowPrivate: config.modelAllowPrivate }), ctx.resolver);
      }
      languageModel = createLanguageModel(model, pinned?.fetch);
    } catch (err) {
      if (err instanceof UnsupportedProtocolError) return await fail(turnError('MODEL_PROTOCOL_UNSUPPORTED', err.message));
      throw err;
    }
    const native = usesNativeSchema(model);
    const system = structuredSystemPrompt({
      ghostSystemPrompt: member.ghost.systemPrompt,
      memberPrompt: member.prompt,
      instructions: request.overrides?.instructions,
      decisionText: decision.decisionText,
    });
    const messages: ModelMessage[] = [
      ...historyMessages(request.history, { botUid: member.bot.uid, memberIndex: decision.memberIndex }),
      { role: 'user', content: request.input.userMessage },
    ];
    const window = model.contextWindow ?? config.defaultContextWindow;

    // One silent call; returns the answer text, or the turn's end.
    const call = async (callMessages: ModelMessage[]): Promise<{ text: string } | { end: StructuredOutcome<T> }> => {
      if (ctx.signal.aborted) return { end: await cancel() };
      const rawEstimate = estimatePrompt(system, callMessages, []);
      await reporter.emit({ type: 'context.updated', usedTokens: rawEstimate, budgetTokens: contextBudget(window, model.maxOutputTokens), contextWindow: window, compacted: false });
      const callRequest: ModelCallRequest = {
        model: languageModel,
        system,
        messages: callMessages,
        temperature: request.overrides?.temperature ?? member.ghost.temperature ?? model.temperature,
        topP: request.overrides?.topP,
        maxOutputTokens: request.overrides?.maxOutputTokens ?? model.maxOutputTokens,
        maxRetries: model.maxRetries ?? DEFAULT_MODEL_MAX_RETRIES,
        signal,
        totalTimeoutMs: (model.timeoutSeconds ?? DEFAULT_MODEL_TIMEOUT_SECONDS) * 1000,
        idleTimeoutMs: config.modelIdleTimeoutMs,
        // Structured calls stream without showing anything: no deltas, and reasoning is discarded.
        onTextDelta: () => {},
        onReasoningDelta: () => {},
        ...(native
          ? {
              output: Output.object({ schema: jsonSchema(decision.schema as Parameters<typeof jsonSchema>[0]) }),
              ...(model.protocol === 'anthropic' ? { providerOptions: { anthropic: { structuredOutputMode: 'jsonTool' } } } : {}),
            }
          : {}),
      };
      const result: ModelCallResult = await callModel(callRequest);
      if (result.status !== 'aborted' && (result.status === 'finished' || result.text !== '' || result.usage)) {
        const usage = result.usage;
        await reporter.emit({
          type: 'usage',
          ...callUsage(model, usage, result.status === 'finished' ? result.providerMetadata : undefined, () => ({ input: rawEstimate, output: estimateTokens(result.text) })),
        });
      }
      if (result.status === 'aborted' || ctx.signal.aborted) return { end: ctx.signal.aborted ? await cancel() : await fail(timeoutError(model, config.turnTimeoutMs, 'turn')) };
      if (result.status === 'failed') {
        if (turnTimeout.signal.aborted) return { end: await fail(timeoutError(model, config.turnTimeoutMs, 'turn')) };
        const error = result.timeout ? timeoutError(model, result.timeout === 'total' ? (model.timeoutSeconds ?? DEFAULT_MODEL_TIMEOUT_SECONDS) * 1000 : config.modelIdleTimeoutMs, result.timeout) : mapModelError(result, model);
        return { end: await fail(error) };
      }
      return { text: result.text };
    };

    const first = await call(messages);
    if ('end' in first) return first.end;
    let checked = decision.validate(first.text);
    if (!checked.ok) {
      const repair: ModelMessage[] = [
        ...messages,
        ...(first.text === '' ? [] : [{ role: 'assistant' as const, content: first.text }]),
        { role: 'user', content: repairMessage(checked.error) },
      ];
      const second = await call(repair);
      if ('end' in second) return second.end;
      checked = decision.validate(second.text);
    }
    await reporter.emit({ type: 'block.added', block: decision.block(checked) });
    await reporter.emit({ type: 'turn.done', text: '', reasoning: '', finishReason: 'stop' });
    await finish({ status: 'completed', text: '', reasoning: '', finishReason: 'stop' });
    return checked.ok ? { status: 'decided', value: checked.value } : { status: 'fallback', error: checked.error };
  } catch (err) {
    if (ctx.signal.aborted) return await cancel();
    return await fail(turnError('INTERNAL', `internal error: ${err instanceof Error ? err.message : String(err)}`));
  } finally {
    clearTimeout(turnTimer);
    pinned?.close();
  }
}

function timeoutError(model: ModelConnection, ms: number, kind: 'total' | 'idle' | 'turn'): TurnError {
  const name = `Model '${model.resource.name}' (namespace ${model.resource.namespace})`;
  if (kind === 'turn') return turnError('TURN_TIMEOUT', `The turn took longer than ${Math.round(ms / 1000)} s and was stopped.`);
  if (kind === 'total') return turnError('MODEL_TIMEOUT', `${name} did not finish within ${Math.round(ms / 1000)} s.`);
  return turnError('MODEL_TIMEOUT', `${name} sent nothing for ${Math.round(ms / 1000)} s.`);
}

// --- Validation (runtime.md §9 step 3) ---

/** The answer text trimmed, stripped of one enclosing Markdown code fence, parsed to a JSON object. */
export function parseAnswerObject(answer: string): Record<string, unknown> | undefined {
  let text = answer.trim();
  const fenced = /^```(?:json)?[^\S\n]*\n([\s\S]*?)\n?[^\S\n]*```$/u.exec(text) ?? /^```(?:json)?([\s\S]*?)```$/u.exec(text);
  if (fenced) text = fenced[1]!.trim();
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

const NOT_AN_OBJECT = 'the answer is not a JSON object';

/** Matches a name ignoring case (after trimming) and returns the allowed spelling. */
function memberName(names: readonly string[]) {
  const byLower = new Map(names.map((n) => [n.toLowerCase(), n]));
  return z
    .string()
    .trim()
    .refine((s) => byLower.has(s.toLowerCase()))
    .transform((s) => byLower.get(s.toLowerCase())!);
}

const optionalText = (limit: number) =>
  z
    .unknown()
    .optional()
    .transform((v) => (typeof v === 'string' ? cutChars(v.trim(), limit) : ''));

export interface RouteDecision {
  member: string;
  reason: string;
}

/** Validates a route answer (§9.3): `member` one of the allowed names; `reason` cut to 500 characters. */
export function validateRoute(answer: string, names: readonly string[]): Validation<RouteDecision> {
  const value = parseAnswerObject(answer);
  if (!value) return { ok: false, error: NOT_AN_OBJECT };
  const parsed = z.object({ member: memberName(names), reason: optionalText(500) }).safeParse(value);
  if (parsed.success) return { ok: true, value: parsed.data };
  return { ok: false, error: `"member" must be one of: ${jsonNames(names)}` };
}

export interface PlanDecision {
  subRequests: Array<{ member: string; request: string }>;
}

/**
 * Validates a plan answer (§9.4): 1 to `maxSubRequests` sub-requests (more are dropped), each with an
 * allowed `member` and a non-empty `request` cut to 4,000 characters; the first problem in order is reported.
 */
export function validatePlan(answer: string, names: readonly string[], maxSubRequests: number): Validation<PlanDecision> {
  const value = parseAnswerObject(answer);
  if (!value) return { ok: false, error: NOT_AN_OBJECT };
  const item = z.object({ member: memberName(names), request: z.string().trim().min(1).transform((s) => cutChars(s, 4000)) });
  const schema = z.object({
    subRequests: z.preprocess((v) => (Array.isArray(v) ? v.slice(0, maxSubRequests) : v), z.array(item).min(1)),
  });
  const parsed = schema.safeParse(value);
  if (parsed.success) return { ok: true, value: parsed.data };
  // zod reports issues in order (items in order, `member` before `request`): the first is the answer's first problem.
  const path = parsed.error.issues[0]!.path;
  if (path.length < 2) return { ok: false, error: `"subRequests" must be a list of 1 to ${maxSubRequests} items` };
  const i = Number(path[1]) + 1;
  if (path[2] === 'request') return { ok: false, error: `sub-request ${i}: "request" must be a non-empty string` };
  return { ok: false, error: `sub-request ${i}: "member" must be one of: ${jsonNames(names)}` };
}

/** The native schema of a route decision. */
export function routeSchema(names: readonly string[]): Record<string, unknown> {
  return {
    type: 'object',
    properties: { member: { type: 'string', enum: [...names] }, reason: { type: 'string' } },
    required: ['member', 'reason'],
    additionalProperties: false,
  };
}

/** The native schema of a plan. */
export function planSchema(names: readonly string[]): Record<string, unknown> {
  return {
    type: 'object',
    properties: {
      subRequests: {
        type: 'array',
        items: {
          type: 'object',
          properties: { member: { type: 'string', enum: [...names] }, request: { type: 'string' } },
          required: ['member', 'request'],
          additionalProperties: false,
        },
      },
    },
    required: ['subRequests'],
    additionalProperties: false,
  };
}
