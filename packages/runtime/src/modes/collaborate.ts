import { z } from 'zod';
import { COLLABORATE_SUMMARY_NOTE, contributionModeNote, discussionMessage, type Contribution } from '../prompt/mode-prompts.js';
import { TurnReporter, type TurnEventInput } from '../run/event-sink.js';
import { runMemberStep, type RunContext } from '../run/member-step.js';
import type { RunOutcome } from '../run/types.js';
import type { RuntimeTool } from '../tools/tool.js';
import { runSolo } from './solo.js';
import { boolOption, intOption } from './team.js';

/** Team `collaborationOptions.maxRounds` default (resources.md §14.1). */
export const DEFAULT_MAX_ROUNDS = 3;

/**
 * `collaborate` (runtime.md §9.5): members take turns on a shared transcript, in member order, for up to
 * `maxRounds` rounds; the discussion ends after a contribution whose member called `collaboration_done`
 * or ended with the `[DONE]` line. With `finalSummary`, the leader then writes the answer.
 */
export async function runCollaborate(ctx: RunContext, leader: number): Promise<RunOutcome> {
  const { request } = ctx;
  const count = request.members.length;
  if (count === 1) return runSolo(ctx, leader);
  const maxRounds = intOption(ctx, 'maxRounds', DEFAULT_MAX_ROUNDS, 1, 10);
  const finalSummary = boolOption(ctx, 'finalSummary', false);
  const contributions: Contribution[] = [];
  const userMessage = { role: 'user' as const, content: request.input.userMessage };

  discussion: for (let round = 0; round < maxRounds; round++) {
    let completed = 0;
    for (let i = 0; i < count; i++) {
      const name = ctx.names[i]!;
      const others = ctx.names.filter((_, j) => j !== i);
      const member = request.members[i]!;
      // collaboration_done is always offered, so the turn offers tools whenever its Model takes them and it has tool rounds.
      const offersTools = member.model?.capabilities?.tools !== false && Math.min(member.bot.maxToolRounds ?? ctx.config.maxToolRounds, ctx.config.maxToolRounds) > 0;
      let calledDone = false;
      const marker = new DoneMarker();
      const step = await runMemberStep(ctx, {
        memberIndex: i,
        purpose: 'contribution',
        visible: true,
        modeNote: contributionModeNote(name, others, offersTools),
        tail: contributions.length === 0 ? [userMessage] : [userMessage, { role: 'user', content: discussionMessage(contributions) }],
        extraTools: [collaborationDoneTool(() => (calledDone = true))],
        wrapReporter: (reporter) => marker.wrap(reporter),
      });
      const r = step.result;
      if (r.status === 'cancelled') return { status: 'cancelled' };
      if (r.status === 'failed') {
        contributions.push({ name, code: r.error.code });
        continue;
      }
      completed += 1;
      contributions.push({ name, text: marker.text });
      if (calledDone || marker.ended) break discussion;
    }
    if (completed === 0) return { status: 'failed', error: { code: 'ALL_MEMBERS_FAILED', message: `Every member's contribution in round ${round + 1} failed.` } };
  }

  if (!finalSummary) return { status: 'completed' };
  const summary = await runMemberStep(ctx, {
    memberIndex: leader,
    purpose: 'summary',
    visible: true,
    modeNote: COLLABORATE_SUMMARY_NOTE,
    tail: [userMessage, { role: 'user', content: discussionMessage(contributions) }],
  });
  const r = summary.result;
  if (r.status === 'completed') return { status: 'completed' };
  if (r.status === 'cancelled') return { status: 'cancelled' };
  return { status: 'failed', error: { code: r.error.code, message: r.error.message } };
}

/** `collaboration_done` (runtime.md §6.5): ends the discussion after the current member's message. */
export function collaborationDoneTool(onCall: () => void): RuntimeTool {
  return {
    name: 'collaboration_done',
    description: 'Call this when the request is fully answered and nothing important is left to add; the discussion ends after your message.',
    source: 'builtin',
    inputSchema: z.object({ summary: z.string().optional() }) as z.ZodType<unknown>,
    timeoutMs: 10_000,
    execute: async () => {
      onCall();
      return { ok: true };
    },
  };
}

// A trailing part that could still become the ending: a line break (or the start) and a prefix of
// `[DONE]`, or `[DONE]` and whitespace. The leftmost match is the longest such suffix.
const HOLD_BACK = /(?:^|\n)(?:\[DONE\]\s*|\[(?:D(?:O(?:N(?:E)?)?)?)?)?$/u;
const ENDING = /(?:^|\n)\[DONE\]\s*$/u;

/**
 * The `[DONE]` line of a contribution (runtime.md §9.5): while streaming, holds back a trailing part that
 * could still become that ending and emits it once it cannot, so the streamed text stays append-only; at
 * the end, removes the marker, the line break before it and the whitespace after it from the turn's text.
 */
export class DoneMarker {
  #full = '';
  #emitted = 0;
  #final: string | undefined;
  #ended = false;

  /** Whether the message ended with the marker. */
  get ended(): boolean {
    return this.#ended;
  }

  /** The message text without the marker (after the turn ended). */
  get text(): string {
    return this.#final ?? this.#full;
  }

  wrap(inner: TurnReporter): TurnReporter {
    return new TurnReporter(inner.turnId, (event) => this.#handle(event, inner));
  }

  async #handle(event: TurnEventInput, inner: TurnReporter): Promise<void> {
    if (event.type === 'text.delta') {
      this.#full += event.delta;
      const held = HOLD_BACK.exec(this.#full)?.[0].length ?? 0;
      const end = this.#full.length - held;
      if (end > this.#emitted) {
        const delta = this.#full.slice(this.#emitted, end);
        this.#emitted = end;
        await inner.emit({ type: 'text.delta', delta });
      }
      return;
    }
    if (event.type === 'turn.done' || event.type === 'turn.failed' || event.type === 'turn.cancelled') {
      const match = ENDING.exec(this.#full);
      this.#ended = match !== null;
      const text = match ? this.#full.slice(0, match.index) : this.#full;
      this.#final = text;
      if (text.length > this.#emitted) {
        await inner.emit({ type: 'text.delta', delta: text.slice(this.#emitted) });
        this.#emitted = text.length;
      }
      await inner.emit({ ...event, text });
      return;
    }
    await inner.emit(event);
  }
}
