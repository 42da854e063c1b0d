import type { RuntimeEvent, RuntimeEventOf, RuntimeEventType } from '@wegent/core';
import { RuntimeEvent as RuntimeEventSchema } from '@wegent/core';
import type { ModelConnection, ResolvedMember, RunHost, RunRequest, TurnSpec } from './types.js';

/** Test support: a host that records what the runtime reports, and builders for run requests. */

export const FIXED_NOW = new Date('2026-01-15T10:20:30.000Z');

export class RecordingHost implements RunHost {
  readonly events: RuntimeEvent[] = [];
  readonly turns: Array<TurnSpec & { turnId: string }> = [];
  #listeners: Array<(event: RuntimeEvent) => void> = [];

  createTurn(spec: TurnSpec): string {
    const turnId = `turn-${this.turns.length + 1}`;
    this.turns.push({ ...spec, turnId });
    return turnId;
  }

  emit(event: RuntimeEvent): void {
    // Every event must satisfy the core schema.
    RuntimeEventSchema.parse(event);
    this.events.push(event);
    for (const listener of this.#listeners) listener(event);
  }

  now(): Date {
    return FIXED_NOW;
  }

  of<T extends RuntimeEventType>(type: T): Array<RuntimeEventOf<T>> {
    return this.events.filter((e): e is RuntimeEventOf<T> => e.type === type);
  }

  types(): string[] {
    return this.events.map((e) => e.type);
  }

  /** The concatenated text deltas. */
  streamedText(): string {
    return this.of('text.delta')
      .map((e) => e.delta)
      .join('');
  }

  /** Resolves on the first event matching the predicate (past or future). */
  waitFor(predicate: (event: RuntimeEvent) => boolean): Promise<RuntimeEvent> {
    const found = this.events.find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise((resolve) => {
      this.#listeners.push((event) => {
        if (predicate(event)) resolve(event);
      });
    });
  }
}

const resource = (name: string, uid = `uid-${name}`) => ({ uid, generation: 1, name, namespace: 'default', scope: 'user' });

export function modelConnection(overrides: Partial<ModelConnection> = {}): ModelConnection {
  return {
    resource: resource('test-model'),
    protocol: 'openai',
    modelId: 'gpt-4o-mini',
    apiKey: 'sk-test-secret-key',
    trustedOwner: false,
    ...overrides,
  };
}

export function member(overrides: Partial<ResolvedMember> & { model?: ModelConnection | null } = {}): ResolvedMember {
  return {
    index: 0,
    bot: resource('helper-bot'),
    ghost: { ...resource('helper-ghost'), systemPrompt: 'You are a helpful assistant.' },
    shell: { ...resource('chat'), shellType: 'Chat' },
    model: modelConnection(),
    ...overrides,
  };
}

/** A solo run request; the fake model server on loopback is reachable through the allow-list. */
export function soloRequest(overrides: Partial<RunRequest> = {}): RunRequest {
  return {
    taskId: 'task-1',
    runId: 'run-1',
    runSeq: 1,
    mode: 'solo',
    members: [member()],
    team: resource('team'),
    history: [],
    input: { userMessage: 'Hello there' },
    config: { network: { privateHostsAllow: ['127.0.0.1'] } },
    ...overrides,
  };
}
