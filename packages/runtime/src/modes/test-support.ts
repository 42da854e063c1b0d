import type { RuntimeEvent } from '@wegent/core';
import type { FakeModelServer } from '../testing/index.js';
import { FIXED_NOW, RecordingHost, modelConnection } from '../run/test-fixtures.js';
import type { ModelConnection, ResolvedMember, RunRequest } from '../run/types.js';

/** Test support for the collaboration mode tests: Teams of named members talking to the fake model server. */

export const DATE_LINE = `Current date: ${FIXED_NOW.toISOString().slice(0, 10)} (UTC).`;

/** A plain OpenAI-compatible endpoint: the runtime sends no response_format and no JSON mode to it. */
export function compatibleModel(fake: FakeModelServer, overrides: Partial<ModelConnection> = {}): ModelConnection {
  return modelConnection({ protocol: 'openai-compatible', modelId: 'local-llm', baseUrl: fake.openaiBaseUrl, ...overrides });
}

export interface MemberOptions {
  name: string;
  displayName?: string;
  role?: string;
  prompt?: string;
  systemPrompt?: string;
  description?: string;
  contextPassing?: ResolvedMember['contextPassing'];
  requireConfirmation?: boolean;
  tools?: string[];
  model?: ModelConnection | null;
}

/** A Team member whose Bot, Ghost and Shell carry its name; no built-in tools unless asked for. */
export function teamMember(fake: FakeModelServer, index: number, o: MemberOptions): ResolvedMember {
  const r = (kind: string) => ({ uid: `uid-${kind}-${o.name}`, generation: 1, name: `${o.name}-${kind}`, namespace: 'default', scope: 'user' });
  return {
    index,
    role: o.role,
    prompt: o.prompt,
    contextPassing: o.contextPassing,
    requireConfirmation: o.requireConfirmation,
    bot: { ...r('bot'), name: o.name, ...(o.displayName !== undefined ? { displayName: o.displayName } : {}) },
    ghost: { ...r('ghost'), systemPrompt: o.systemPrompt ?? `You are ${o.name}.`, description: o.description, tools: o.tools ?? [] },
    shell: { ...r('shell'), shellType: 'Chat' },
    model: o.model === undefined ? compatibleModel(fake) : o.model,
  };
}

/** A run request for a Team in `mode`. */
export function teamRequest(mode: RunRequest['mode'], members: ResolvedMember[], overrides: Partial<RunRequest> = {}): RunRequest {
  return {
    taskId: 'task-1',
    runId: 'run-1',
    runSeq: 1,
    mode,
    members,
    team: { uid: 'uid-team', generation: 1, name: 'dev-team', namespace: 'default', scope: 'user' },
    history: [],
    input: { userMessage: 'Build a login page.' },
    config: { network: { privateHostsAllow: ['127.0.0.1'] } },
    ...overrides,
  };
}

/** The events of one turn, in order, without their envelope. */
export function turnEvents(host: RecordingHost, turnId: string): RuntimeEvent[] {
  return host.events.filter((e) => 'turnId' in e && e.turnId === turnId);
}

/** Event types per turn, in turn order, as a user's client would group them. */
export function typesByTurn(host: RecordingHost): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const t of host.turns) out[t.turnId] = turnEvents(host, t.turnId).map((e) => e.type);
  return out;
}

/** The text the user saw streamed for one turn. */
export function streamedTextOf(host: RecordingHost, turnId: string): string {
  return host
    .of('text.delta')
    .filter((e) => e.turnId === turnId)
    .map((e) => e.delta)
    .join('');
}
