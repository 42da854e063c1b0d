import type { ModelMessage } from 'ai';
import { utf8Bytes } from '../prompt/text-forms.js';

/** Token estimates and the context budget (runtime.md §10.2, §10.3). */

export const DEFAULT_CONTEXT_WINDOW = 128_000;

/** `estimate(text) = ceil(utf8Bytes(text) / 3)`. */
export function estimateTokens(text: string): number {
  return Math.ceil(utf8Bytes(text) / 3);
}

/** A tool as offered to a model, for estimating. */
export interface OfferedToolShape {
  name: string;
  description: string;
  parameters: unknown;
}

/**
 * A prompt's estimate: per message (the system prompt included) `estimate(text) + 4`, a tool call counting
 * as its name followed by its arguments' JSON and a tool result as its text; plus the offered tools' JSON.
 */
export function estimatePrompt(system: string, messages: readonly ModelMessage[], tools: readonly OfferedToolShape[] = []): number {
  let total = estimateTokens(system) + 4;
  for (const message of messages) {
    if (typeof message.content === 'string') {
      total += estimateTokens(message.content) + 4;
      continue;
    }
    let text = '';
    let items = 0;
    for (const part of message.content) {
      if (part.type === 'text') text += part.text;
      else if (part.type === 'tool-call') {
        total += estimateTokens(part.toolName + (JSON.stringify(part.input) ?? '')) + 4;
        items++;
      } else if (part.type === 'tool-result') {
        const output = part.output;
        const value = output.type === 'text' || output.type === 'error-text' ? output.value : JSON.stringify(output);
        total += estimateTokens(value) + 4;
        items++;
      }
    }
    if (text !== '' || items === 0) total += estimateTokens(text) + 4;
  }
  if (tools.length > 0) total += estimateTokens(JSON.stringify(tools.map((t) => ({ name: t.name, description: t.description, parameters: t.parameters }))));
  return total;
}

/** `reserved = min(max(16000, min(48000, floor(window/10))), maxOutputTokens, floor(window/2))`; budget = window − reserved. */
export function contextBudget(window: number, maxOutputTokens?: number): number {
  const reserved = Math.min(Math.max(16_000, Math.min(48_000, Math.floor(window / 10))), maxOutputTokens ?? Infinity, Math.floor(window / 2));
  return window - reserved;
}

/** The estimator of one turn, recalibrated by the provider's reported input tokens (factor kept within 0.5–2). */
export class TokenEstimator {
  #factor = 1;

  get factor(): number {
    return this.#factor;
  }

  /** A calibrated estimate. */
  scale(estimate: number): number {
    return Math.ceil(estimate * this.#factor);
  }

  /** Recalibrates from one call: `reported ÷ estimated` (the raw estimate of the prompt sent). */
  calibrate(estimated: number, reported: number | undefined): void {
    if (!reported || estimated <= 0) return;
    this.#factor = Math.min(2, Math.max(0.5, reported / estimated));
  }
}
