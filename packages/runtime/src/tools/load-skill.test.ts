import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startFakeModelServer, type FakeModelServer } from '../testing/index.js';
import { executeRun } from '../run/execute-run.js';
import { member, modelConnection, RecordingHost, soloRequest } from '../run/test-fixtures.js';
import type { SandboxSession } from '@wegent/core';
import type { ResolvedMember, ResolvedSkill } from '../run/types.js';

let fake: FakeModelServer;

beforeAll(async () => {
  fake = await startFakeModelServer();
});
afterAll(async () => {
  await fake.close();
});
beforeEach(() => {
  fake.reset();
});

const skill = (name: string, description: string, body: string): ResolvedSkill => ({ uid: `uid-${name}`, generation: 1, name, namespace: 'default', scope: 'user', description, body });

const PDF = skill('pdf-tools', 'Work with PDF files:\n  split,  merge and\tfill forms.', 'Use `qpdf` to split.\n\n1. Check the page count first.\n');
const MERMAID = skill('mermaid-diagram', 'Draw diagrams as Mermaid code.', '## Mermaid\nWrite a fenced `mermaid` block.');
const STYLE = skill('house-style', 'Our writing style.', 'Write short sentences.\n\n');

function skilledMember(ghost: Partial<ResolvedMember['ghost']>, shellType = 'Chat'): ResolvedMember {
  return member({
    model: modelConnection({ protocol: 'openai', modelId: 'gpt-4o-mini', baseUrl: fake.openaiBaseUrl }),
    shell: { uid: 'uid-shell', generation: 1, name: 'chat', namespace: 'default', scope: 'user', shellType },
    ghost: { uid: 'uid-ghost', generation: 1, name: 'helper-ghost', namespace: 'default', scope: 'user', systemPrompt: 'You are Helper.', tools: [], ...ghost },
  });
}

async function run(m: ResolvedMember) {
  const host = new RecordingHost();
  const outcome = await executeRun(soloRequest({ members: [m] }), host, new AbortController().signal);
  return { host, outcome };
}

const toolResults = (request: { body: { messages: Array<{ role: string; content: unknown }> } }) => request.body.messages.filter((m) => m.role === 'tool').map((m) => m.content);

describe('skills in a member turn (runtime.md §4.1, §6.3, §8)', () => {
  it('puts only the name and one-line description of each skill into the system prompt, in the Ghost order', async () => {
    fake.script(['ok']);
    await run(skilledMember({ skills: [PDF, MERMAID] }));
    const [system] = fake.requests[0]!.body.messages;
    expect(system).toEqual({
      role: 'system',
      content:
        'You are Helper.\n\n' +
        'Skills you can load with the load_skill tool:\n- pdf-tools: Work with PDF files: split, merge and fill forms.\n- mermaid-diagram: Draw diagrams as Mermaid code.\n\n' +
        'Current date: 2026-01-15 (UTC).',
    });
    expect(JSON.stringify(fake.requests[0]!.body)).not.toContain('qpdf');
    expect(fake.requests[0]!.body.tools.map((t: { function: { name: string } }) => t.function.name)).toEqual(['load_skill']);
  });

  it('returns the body from load_skill, and a pointer when the same skill is loaded again in the turn', async () => {
    fake.script([
      { steps: [{ toolCall: { id: 'c1', name: 'load_skill', arguments: { name: 'pdf-tools' } } }] },
      { steps: [{ toolCall: { id: 'c2', name: 'load_skill', arguments: { name: 'pdf-tools' } } }] },
      'Split done.',
    ]);
    const { host, outcome } = await run(skilledMember({ skills: [PDF, MERMAID] }));
    expect(outcome.status).toBe('completed');
    expect(toolResults(fake.requests[1]!)).toEqual(['# Skill: pdf-tools\n\nUse `qpdf` to split.\n\n1. Check the page count first.\n']);
    expect(toolResults(fake.requests[2]!)).toEqual(['# Skill: pdf-tools\n\nUse `qpdf` to split.\n\n1. Check the page count first.\n', 'Skill pdf-tools is already loaded above.']);
    expect(host.of('tool.started')[0]).toMatchObject({ toolName: 'load_skill', toolSource: 'builtin', input: { name: 'pdf-tools' } });
  });

  it('answers an unknown skill with a tool error listing the skills that can be loaded', async () => {
    fake.script([{ steps: [{ toolCall: { id: 'c1', name: 'load_skill', arguments: { name: 'excel' } } }] }, 'Sorry.']);
    const { host } = await run(skilledMember({ skills: [PDF, MERMAID] }));
    expect(toolResults(fake.requests[1]!)).toEqual(['{"error":"unknown skill \'excel\'; skills you can load: pdf-tools, mermaid-diagram"}']);
    expect(host.of('tool.finished')[0]).toMatchObject({ isError: true, status: 'failed' });
  });

  it('puts preloaded skills in full into the system prompt and does not offer them for loading', async () => {
    fake.script([{ steps: [{ toolCall: { id: 'c1', name: 'load_skill', arguments: { name: 'house-style' } } }] }, 'ok']);
    await run(skilledMember({ systemPrompt: 'You write.', skills: [PDF, STYLE, MERMAID], preloadSkills: ['mermaid-diagram', 'house-style'] }));
    expect(fake.requests[0]!.body.messages[0].content).toBe(
      'You write.\n\n' +
        'Skills you can load with the load_skill tool:\n- pdf-tools: Work with PDF files: split, merge and fill forms.\n\n' +
        '## Skill: mermaid-diagram\n## Mermaid\nWrite a fenced `mermaid` block.\n\n' +
        '## Skill: house-style\nWrite short sentences.\n\n' +
        'Current date: 2026-01-15 (UTC).',
    );
    expect(toolResults(fake.requests[1]!)).toEqual(['{"error":"unknown skill \'house-style\'; skills you can load: pdf-tools"}']);
  });

  it('offers no load_skill and no catalogue when every skill is preloaded, and keeps the Ghost tools', async () => {
    fake.script(['ok']);
    await run(skilledMember({ tools: ['calculator'], skills: [STYLE], preloadSkills: ['house-style'] }));
    expect(fake.requests[0]!.body.messages[0].content).toBe('You are Helper.\n\n## Skill: house-style\nWrite short sentences.\n\nCurrent date: 2026-01-15 (UTC).');
    expect(fake.requests[0]!.body.tools.map((t: { function: { name: string } }) => t.function.name)).toEqual(['calculator']);
  });

  it('shows a warning block for each listed skill that was left out', async () => {
    fake.script(['ok']);
    const { host } = await run(
      skilledMember(
        {
          skills: [PDF],
          skillsLeftOut: [
            { name: 'gone', reason: 'notFound' },
            { name: 'coder-only', reason: 'notBound' },
          ],
        },
        'Chat',
      ),
    );
    expect(host.of('block.added').map((e) => e.block)).toEqual([
      expect.objectContaining({ type: 'warning', message: "Skill 'gone' was not found and is left out." }),
      expect.objectContaining({ type: 'warning', message: "Skill 'coder-only' is not bound to the Chat shell and is left out." }),
    ]);
    expect(fake.requests[0]!.body.messages[0].content).toContain('- pdf-tools: ');
  });

  it('ends a sandboxed turn with SANDBOX_UNAVAILABLE when a preloaded skill’s files cannot be copied in', async () => {
    const kit: ResolvedSkill = { ...skill('kit', 'A kit.', 'Run the kit.'), packageHash: 'sha-kit' };
    const writes: string[] = [];
    const session: SandboxSession = {
      id: 'sbx-preload', memoryMB: 512,
      exec: () => Promise.reject(new Error('not reached')),
      readFile: () => Promise.reject(new Error('not used')),
      writeFile: async (req) => { writes.push(req.path); throw new Error('disk full'); },
      listFiles: () => Promise.reject(new Error('not used')),
      failure: () => undefined,
      release: () => {},
    };
    const host = new RecordingHost();
    Object.assign(host, { acquireSandbox: async () => session, loadSkillPackage: async () => [{ path: 'run.sh', data: new TextEncoder().encode('echo hi') }] });
    fake.script([{ steps: [{ toolCall: { id: 'c1', name: 'exec', arguments: { command: 'sh .skills/kit/run.sh' } } }] }, 'never']);
    const outcome = await executeRun(soloRequest({ members: [skilledMember({ tools: ['sandbox'], skills: [kit], preloadSkills: ['kit'] })] }), host, new AbortController().signal);
    expect(writes).toEqual(['/workspace/.skills/kit/run.sh']);
    expect(outcome).toEqual({ status: 'failed', error: { code: 'SANDBOX_UNAVAILABLE', message: 'the sandbox could not be prepared: disk full' } });
  });
});
