import { cutChars, oneLine } from './text-forms.js';

/** The texts the collaboration modes add to prompts (runtime.md §9), to the byte (§4.4). */

/** §9.6: an inserted text (output, result, contribution, previous answer) trimmed; empty shows as `(empty)`. */
export function insertedText(text: string): string {
  const trimmed = text.trim();
  return trimmed === '' ? '(empty)' : trimmed;
}

/** `<names>` of a decision: each allowed name as JSON, joined with `, `. */
export function jsonNames(names: readonly string[]): string {
  return names.map((n) => JSON.stringify(n)).join(', ');
}

/** What a member line of a decision text shows (§9.3). */
export interface MemberLineInput {
  name: string;
  role?: string;
  ghostDescription?: string;
  prompt?: string;
}

/** `- <member name> — role: <role>; <description>` (§9.3). */
export function memberLine(m: MemberLineInput): string {
  const role = oneLine(m.role ?? '') || 'member';
  const description = oneLine(m.ghostDescription ?? '') || cutChars(oneLine(m.prompt ?? ''), 300);
  return `- ${m.name} — role: ${role}${description === '' ? '' : `; ${description}`}`;
}

/** The route decision text (§9.3). */
export function routeDecisionText(team: string, members: readonly MemberLineInput[], names: readonly string[]): string {
  return [
    `You route requests for the team "${team}". Choose exactly one member to answer the user's latest message.`,
    '',
    'Members:',
    members.map(memberLine).join('\n'),
    '',
    'Answer with only a JSON object, with no other text, in this form:',
    '{"member": "MEMBER NAME", "reason": "WHY THIS MEMBER (at most 500 characters)"}',
    `"member" must be one of: ${jsonNames(names)}.`,
  ].join('\n');
}

/** The coordinate plan decision text (§9.4). */
export function planDecisionText(team: string, members: readonly MemberLineInput[], names: readonly string[], maxSubRequests: number): string {
  return [
    `You lead the team "${team}". Split the user's request into sub-requests for your members; each member works alone and reports back to you.`,
    '',
    'Members:',
    members.map(memberLine).join('\n'),
    '',
    'Answer with only a JSON object, with no other text, in this form:',
    '{"subRequests": [{"member": "MEMBER NAME", "request": "WHAT THIS MEMBER SHOULD DO (at most 4000 characters)"}]}',
    `Give 1 to ${maxSubRequests} sub-requests. "member" must be one of: ${jsonNames(names)}.`,
  ].join('\n');
}

/** The repair request's user message (§9 step 4). */
export function repairMessage(error: string): string {
  return `Your previous answer was not valid: ${error}. Answer again with only the JSON object.`;
}

/** Pipeline mode note (§9.2). */
export function pipelineModeNote(stage: number, names: readonly string[]): string {
  return `You are step ${stage + 1} of ${names.length} in a pipeline: ${names.join(' → ')}.`;
}

/** Under `contextPassing: none`, the message after the run's user message when earlier stages ran (§9.2). */
export function earlierStepsMessage(earlier: ReadonlyArray<{ stage: number; name: string; output: string }>, stage: number, stageCount: number, name: string): string {
  let text = 'Outputs of the earlier steps:';
  for (const e of earlier) text += `\n\n### Step ${e.stage + 1}: ${e.name}\n${insertedText(e.output)}`;
  return `${text}\n\nIt is your turn now: step ${stage + 1} of ${stageCount} (${name}).`;
}

/** Under `original_and_previous` (§9.2); without a previous output, the request alone. */
export function originalAndPreviousMessage(request: string, previous?: { name: string; output: string }): string {
  if (!previous) return request;
  return `Original request:\n${request}\n\nOutput of the previous step (${previous.name}):\n${insertedText(previous.output)}`;
}

/** The addition a revision run's first stage gets under every passing but `none` (§9.2). */
export function revisionSuffix(ownOutput: string, revision: string): string {
  return `\n\nYour previous answer:\n${insertedText(ownOutput)}\n\nThe user asks for this revision:\n${revision}`;
}

/** Coordinate: the work turns' mode note (§9.4). */
export const COORDINATE_WORK_NOTE = 'You are helping the team leader. Do only the task below; your answer goes to the leader, not to the user.';
/** Coordinate: the aggregate turn's mode note (§9.4). */
export const COORDINATE_AGGREGATE_NOTE = "Combine your team's results into one answer for the user.";

/** Coordinate: the one user message of a work turn (§9.4). */
export function subRequestMessage(userMessage: string, request: string): string {
  return `Request from the user:\n${userMessage}\n\nYour task:\n${request}`;
}

/** One sub-request's outcome as the aggregate sees it: its final text, or the code it ended with. */
export type SubRequestResult = { member: string; request: string } & ({ text: string } | { code: string });

/** Coordinate: the results message of the aggregate turn (§9.4). */
export function resultsMessage(results: readonly SubRequestResult[]): string {
  let text = 'Results from your team:';
  for (const r of results) {
    const body = 'text' in r ? insertedText(r.text) : `(no result: ${r.code})`;
    text += `\n\n### ${r.member} — ${oneLine(r.request)}\n${body}`;
  }
  return text;
}

/** Collaborate: a contribution's mode note (§9.5); the tool clause only when the turn offers tools. */
export function contributionModeNote(name: string, others: readonly string[], offersTools: boolean): string {
  return (
    `You are ${name} in a discussion with ${others.join(', ')} to answer the user's request. Build on what has been said; do not repeat it. ` +
    `When the request is fully answered and nothing important is left to add, ${offersTools ? 'call the collaboration_done tool, or ' : ''}end your message with a line containing only [DONE].`
  );
}

/** Collaborate: the leader's summary mode note (§9.5). */
export const COLLABORATE_SUMMARY_NOTE = 'Write the final answer for the user based on the discussion.';

/** One contribution in the transcript: its text, or the code it ended with. */
export type Contribution = { name: string } & ({ text: string } | { code: string });

/** Collaborate: the discussion message (§9.5). */
export function discussionMessage(contributions: readonly Contribution[]): string {
  let text = 'Discussion so far:';
  for (const c of contributions) text += 'text' in c ? `\n\n**${c.name}:** ${insertedText(c.text)}` : `\n\n**${c.name}:** (no contribution: ${c.code})`;
  return text;
}
