import type { ModelMessage } from 'ai';
import type { HistoryMessage } from '../run/types.js';

/** Purposes of assistant messages that carry an answer into later turns (runtime.md §4.3). */
const ANSWER_BEARING = new Set(['answer', 'aggregate', 'contribution', 'summary']);

/** Who the current turn belongs to: its own earlier messages are unlabelled. */
export interface HistoryViewer {
  botUid: string;
  memberIndex: number;
}

/**
 * The history as model messages (runtime.md §4.3): the checkpoint summary first, user messages as they
 * are, the viewer's own answers plain and every other member's answers labelled `[<member name>] `.
 * Empty texts and non-answer purposes are left out; tool calls and reasoning are never replayed.
 */
export function historyMessages(history: readonly HistoryMessage[], viewer: HistoryViewer): ModelMessage[] {
  return historyEntries(history, viewer).map((e) => e.message);
}

/** One history message as the model sees it, with where it came from (for compaction, runtime.md §10.4). */
export interface HistoryEntry {
  message: ModelMessage;
  /** The stored message's seq, when the server gave it. */
  seq?: number;
  /** The checkpoint summary, and the last seq it covers. */
  checkpoint?: { coversUpToSeq: number | undefined };
}

/** {@link historyMessages} with each message's origin. */
export function historyEntries(history: readonly HistoryMessage[], viewer: HistoryViewer): HistoryEntry[] {
  const summaries: HistoryEntry[] = [];
  const rest: HistoryEntry[] = [];
  for (const message of history) {
    if (message.text === '') continue;
    if (message.role === 'summary') {
      summaries.push({ message: { role: 'user', content: `Summary of the earlier conversation:\n${message.text}` }, checkpoint: { coversUpToSeq: message.coversUpToSeq } });
    } else if (message.role === 'user') {
      rest.push({ message: { role: 'user', content: message.text }, seq: message.seq });
    } else {
      if (message.purpose && !ANSWER_BEARING.has(message.purpose)) continue;
      const own = message.imported || (message.botUid === viewer.botUid && message.memberIndex === viewer.memberIndex);
      const label = own || message.memberName === undefined ? '' : `[${message.memberName}] `;
      rest.push({ message: { role: 'assistant', content: label + message.text }, seq: message.seq });
    }
  }
  return [...summaries, ...rest];
}
