/** Resource documents the API benchmark writes: small but realistic, in the shapes users write them. */

const API_VERSION = 'agent.wecode.io/v1';

const ROLES = ['reviewer', 'planner', 'writer', 'analyst', 'tester', 'translator', 'support agent', 'researcher'];
const TOPICS = ['billing', 'search', 'checkout', 'onboarding', 'payments', 'reporting', 'mobile', 'infrastructure'];

function prompt(i: number): string {
  const role = ROLES[i % ROLES.length]!;
  const topic = TOPICS[(i >> 3) % TOPICS.length]!;
  return [
    `You are a careful ${role} on the ${topic} team.`,
    '',
    'Rules:',
    '  1. Read the whole request before you answer; ask one question when it is ambiguous.',
    `  2. Keep answers short and concrete; quote file names and error messages exactly.`,
    '  3. Never invent numbers; use the calculator tool for arithmetic.',
    '',
  ].join('\n');
}

/** A Ghost (system prompt and tools); `namespace` omitted so that the route's namespace applies. */
export function ghost(name: string, i: number): Record<string, unknown> {
  return {
    apiVersion: API_VERSION,
    kind: 'Ghost',
    metadata: { name, labels: { app: 'bench', team: TOPICS[i % TOPICS.length]! } },
    spec: {
      systemPrompt: prompt(i),
      description: `${ROLES[i % ROLES.length]} for the ${TOPICS[(i >> 3) % TOPICS.length]} team`,
      tools: i % 2 ? ['calculator', 'web_fetch'] : ['calculator'],
      temperature: [0.2, 0.3, 0.5, 0.7, 1][i % 5],
    },
  };
}

export function shell(name: string, i: number): Record<string, unknown> {
  const code = i % 3 === 0;
  return {
    apiVersion: API_VERSION,
    kind: 'Shell',
    metadata: { name, labels: { app: 'bench', type: code ? 'local_engine' : 'direct_chat' } },
    spec: code
      ? { shellType: 'Code', description: 'Coding agent in a sandbox', sandbox: { network: 'none', memoryMB: 1024, cpus: 1, execTimeoutSeconds: 120 } }
      : { shellType: 'Chat', description: 'Chat with tools' },
  };
}

export function bot(name: string, ghostName: string, shellName: string, i: number): Record<string, unknown> {
  return {
    apiVersion: API_VERSION,
    kind: 'Bot',
    metadata: { name, labels: { app: 'bench' } },
    spec: { ghostRef: { name: ghostName }, shellRef: { name: shellName }, maxToolRounds: 5 + (i % 10), description: `bot ${i}` },
  };
}

export function team(name: string, botNames: string[], i: number): Record<string, unknown> {
  const modes = ['solo', 'pipeline', 'route', 'coordinate'];
  const mode = botNames.length === 1 ? 'solo' : modes[1 + (i % 3)]!;
  return {
    apiVersion: API_VERSION,
    kind: 'Team',
    metadata: { name, labels: { app: 'bench' } },
    spec: {
      collaborationModel: mode,
      description: `team ${i} (${mode})`,
      members: botNames.map((b, k) => ({ botRef: { name: b }, role: k === 0 ? 'leader' : ROLES[(i + k) % ROLES.length]!, ...(k ? { prompt: 'Review the previous answer and improve it.' } : {}) })),
    },
  };
}

/**
 * `count` documents (a multiple of 4) in groups of Ghost, Shell, Bot (referencing that Ghost and Shell) and
 * Team (with one to three of the Bots, so references point back and forth within the batch).
 */
export function applyBatch(count: number): Array<Record<string, unknown>> {
  const groups = Math.floor(count / 4);
  const pad = (n: number) => String(n).padStart(4, '0');
  const docs: Array<Record<string, unknown>> = [];
  for (let i = 0; i < groups; i++) {
    const id = pad(i);
    docs.push(ghost(`ghost-${id}`, i), shell(`shell-${id}`, i), bot(`bot-${id}`, `ghost-${id}`, `shell-${id}`, i));
    const members = 1 + (i % 3);
    docs.push(team(`team-${id}`, Array.from({ length: members }, (_, k) => `bot-${pad((i + k) % groups)}`), i));
  }
  return docs;
}
