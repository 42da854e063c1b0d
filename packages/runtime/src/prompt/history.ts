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
  const summaries: ModelMessage[] = [];
  const rest: ModelMessage[] = [];
  for (const message of history) {
    if (message.text === '') continue;
    if (message.role === 'summary') {
      summaries.push({ role: 'user', content: `Summary of the earlier conversation:\n${message.text}` });
    } else if (message.role === 'user') {
      rest.push({ role: 'user', content: message.text });
    } else {
      if (message.purpose && !ANSWER_BEARING.has(message.purpose)) continue;
      const own = message.imported || (message.botUid === viewer.botUid && message.memberIndex === viewer.memberIndex);
      const label = own || message.memberName === undefined ? '' : `[${message.memberName}] `;
      rest.push({ role: 'assistant', content: label + message.text });
    }
  }
  return [...summaries, ...rest];
}
