import { describe, expect, it } from 'vitest';
import type { Ack } from './connection.js';
import { ChatOutput } from './output.js';
import { RunView } from './run-view.js';

// The client side of a run in isolation: the events are written by hand, the acks come from a script.

const TASK = '01a22bbd-0000-7000-8000-000000000001';
const A = '01a22bbd-0000-7000-8000-00000000000a';
const B = '01a22bbd-0000-7000-8000-00000000000b';

function setup(opts: { multiMember?: boolean; answers?: Record<string, (payload: any) => Ack | Promise<Ack>>; cancelRequested?: boolean } = {}) {
  let stdout = '';
  let stderr = '';
  const calls: Array<[string, any]> = [];
  const view = new RunView({
    taskId: TASK,
    runSeq: 1,
    multiMember: opts.multiMember ?? false,
    output: new ChatOutput(
      (t) => (stdout += t),
      (t) => (stderr += t),
    ),
    call: async (event, payload) => {
      calls.push([event, payload]);
      const answer = opts.answers?.[event];
      if (!answer) return { ok: false, error: { code: 'UNKNOWN_EVENT', message: event } };
      return answer(payload);
    },
    cancelRequested: () => opts.cancelRequested ?? false,
  });
  const ev = (name: string, p: Record<string, unknown>) => view.handle(name, { taskId: TASK, runSeq: 1, ...p });
  const start = (id: string, memberName = 'bot', memberIndex = 0, visible = true) => ev('chat:start', { subtaskId: id, seq: 1, memberName, memberIndex, visible });
  const chunk = (id: string, offset: number, text: string) => ev('chat:chunk', { subtaskId: id, kind: 'text', offset, text });
  const done = (id: string, value: string) => ev('chat:done', { subtaskId: id, status: 'COMPLETED', result: { value } });
  const status = (s: string, extra: Record<string, unknown> = {}) => ev('task:status', { status: s, ...extra });
  return { view, ev, start, chunk, done, status, calls, out: () => stdout, err: () => stderr };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe('RunView', () => {
  it('appends chunks by offset, ignores repeats and trims overlaps (§7.3)', async () => {
    const s = setup();
    s.start(A);
    s.chunk(A, 0, 'Hel');
    s.chunk(A, 0, 'Hel');
    s.chunk(A, 1, 'ello, ');
    s.chunk(A, 7, 'wörld 😀');
    s.done(A, 'Hello, wörld 😀');
    s.status('COMPLETED');
    const outcome = await s.view.done;
    expect(s.out()).toBe('Hello, wörld 😀\n');
    expect(outcome).toMatchObject({ status: 'COMPLETED', errorReported: false });
    expect(s.calls).toEqual([]);
  });

  it('asks for the missing text on a gap, holds later chunks meanwhile, and prints every character once', async () => {
    let release!: () => void;
    const s = setup({
      answers: {
        'chat:resume': async (p) => {
          await new Promise<void>((r) => (release = r));
          return { ok: true, subtaskId: A, status: 'RUNNING', seq: 9, offset: p.offset, text: 'lo, wo'.slice(p.offset - 3), cursor: 9, reset: false, blocks: [] };
        },
      },
    });
    s.start(A);
    s.chunk(A, 0, 'Hel');
    s.chunk(A, 6, ' wo'); // gap: 'lo,' was missed
    s.chunk(A, 9, 'rld');
    await tick();
    expect(s.calls).toEqual([['chat:resume', { taskId: TASK, subtaskId: A, offset: 3 }]]);
    expect(s.out()).toBe('Hel');
    release();
    await tick();
    expect(s.out()).toBe('Hello, world');
    s.done(A, 'Hello, world');
    s.status('COMPLETED');
    await s.view.done;
    expect(s.out()).toBe('Hello, world\n');
  });

  it('says so on stderr when a resume answers reset, and does not print the kept text twice', async () => {
    const s = setup({
      answers: { 'chat:resume': () => ({ ok: true, subtaskId: A, status: 'RUNNING', seq: 3, offset: 0, text: 'Hello', cursor: 5, reset: true, blocks: [] }) },
    });
    s.start(A);
    s.chunk(A, 0, 'Hello, wor');
    s.chunk(A, 20, 'x'); // far beyond: the server's text is shorter than ours
    await tick();
    await tick();
    expect(s.err()).toContain('the server lost part of this answer');
    s.chunk(A, 5, ' again');
    s.done(A, 'Hello again');
    s.status('COMPLETED');
    await s.view.done;
    expect(s.out()).toBe('Hello, wor again\n');
  });

  it('prints turns that stream in parallel one after the other, each under its member’s name', async () => {
    const s = setup({ multiMember: true });
    s.start(A, 'Researcher', 1);
    s.start(B, 'Writer', 2);
    s.chunk(B, 0, 'B says ');
    s.chunk(A, 0, 'A says ');
    s.chunk(B, 7, 'more');
    s.chunk(A, 7, 'less');
    expect(s.out()).toBe('Researcher\nA says less');
    s.done(B, 'B says more');
    s.done(A, 'A says less');
    s.status('COMPLETED');
    await s.view.done;
    expect(s.out()).toBe('Researcher\nA says less\n\nWriter\nB says more\n');
  });

  it('shows the names once a second member answers in a run, even when the team was not known', async () => {
    const s = setup();
    s.start(A, 'First', 0);
    s.chunk(A, 0, 'one');
    s.done(A, 'one');
    s.start(B, 'Second', 1);
    s.chunk(B, 0, 'two');
    s.done(B, 'two');
    s.status('COMPLETED');
    await s.view.done;
    expect(s.out()).toBe('one\n\nSecond\ntwo\n');
  });

  it('prints nothing of a hidden turn but its error, and the failure once', async () => {
    const s = setup();
    s.start(A, 'Leader', 0, false);
    s.ev('chat:error', { subtaskId: A, status: 'FAILED', code: 'MODEL_AUTH_FAILED', message: 'bad key', partialText: '' });
    s.status('FAILED', { statusReason: 'MODEL_AUTH_FAILED', errorMessage: 'bad key' });
    const outcome = await s.view.done;
    expect(s.out()).toBe('');
    expect(s.err()).toBe('Error: MODEL_AUTH_FAILED: bad key\n');
    expect(outcome).toMatchObject({ status: 'FAILED', errorReported: true });
  });

  it('adopts the final text of the terminal event when the stream missed its tail (§7.4)', async () => {
    const s = setup();
    s.start(A);
    s.chunk(A, 0, 'Once upon');
    s.ev('chat:cancelled', { subtaskId: A, status: 'CANCELLED', reason: 'USER_CANCELLED', partialText: 'Once upon a ti' });
    s.status('CANCELLED');
    await s.view.done;
    expect(s.out()).toBe('Once upon a ti\n');
    expect(s.err()).toBe('(cancelled: USER_CANCELLED)\n');
  });

  it('reports a cancel the user asked for as ^C cancelled', async () => {
    const s = setup({ cancelRequested: true });
    s.start(A);
    s.chunk(A, 0, 'partial');
    s.ev('chat:cancelled', { subtaskId: A, status: 'CANCELLED', reason: 'USER_CANCELLED', partialText: 'partial' });
    s.status('CANCELLED');
    expect((await s.view.done).status).toBe('CANCELLED');
    expect(s.err()).toBe('^C cancelled\n');
  });

  it('recovers after a reconnect: finds the turns of the run, resumes each from what it has, and ends', async () => {
    const s = setup({
      multiMember: true,
      answers: {
        'task:join': () => ({ ok: true, task: {}, runtime: { taskId: TASK, status: 'COMPLETED', runSeq: 1, activeStreams: [] } }),
        'history:sync': () => ({
          ok: true,
          messages: [
            { id: 'user-1', role: 'user', runSeq: 1, content: 'q' },
            { id: A, role: 'assistant', runSeq: 1, visible: true, sender: { type: 'bot', memberName: 'Alpha', memberIndex: 0 } },
            { id: B, role: 'assistant', runSeq: 1, visible: true, sender: { type: 'bot', memberName: 'Beta', memberIndex: 1 } },
          ],
        }),
        'chat:resume': (p) => {
          const full = p.subtaskId === A ? 'alpha answer' : 'beta answer';
          return { ok: true, subtaskId: p.subtaskId, status: 'COMPLETED', seq: 5, offset: p.offset, text: full.slice(p.offset), cursor: full.length, reset: false, blocks: [], terminal: { status: 'COMPLETED', result: { value: full } } };
        },
      },
    });
    s.start(A, 'Alpha', 0);
    s.chunk(A, 0, 'alpha');
    // …the connection drops here; A finishes, B runs and finishes, the run completes.
    await s.view.recover();
    const outcome = await s.view.done;
    expect(outcome.status).toBe('COMPLETED');
    expect(s.out()).toBe('Alpha\nalpha answer\n\nBeta\nbeta answer\n');
    expect(s.calls.filter(([e]) => e === 'chat:resume').map(([, p]) => [p.subtaskId, p.offset])).toEqual([
      [A, 5],
      [B, 0],
    ]);
  });

  it('ignores events of other tasks and other runs', async () => {
    const s = setup();
    s.start(A);
    s.view.handle('chat:chunk', { taskId: 'another', runSeq: 1, subtaskId: A, kind: 'text', offset: 0, text: 'NO' });
    s.view.handle('chat:chunk', { taskId: TASK, runSeq: 2, subtaskId: A, kind: 'text', offset: 0, text: 'NO' });
    s.view.handle('task:status', { taskId: TASK, runSeq: 0, status: 'COMPLETED' });
    s.chunk(A, 0, 'yes');
    s.done(A, 'yes');
    s.status('COMPLETED');
    await s.view.done;
    expect(s.out()).toBe('yes\n');
  });
});
