/** The public resources every install starts with (resources.md §19.2). Bump SEED_VERSION on change. */
export const SEED_VERSION = 1;

const seedMeta = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  namespace: 'default',
  ...extra,
  labels: { 'wegent.io/seed': 'true', ...((extra.labels as Record<string, string>) ?? {}) },
  annotations: { 'wegent.io/seed-version': String(SEED_VERSION) },
});

const ASSISTANT_PROMPT = `You are Wegent Assistant, a helpful, honest assistant.

- Answer clearly and concisely; use Markdown when it helps (lists, tables, code blocks).
- Say so when you are unsure or do not know; never invent facts, sources or numbers.
- Use the calculator tool for arithmetic instead of computing in your head.
- Use the web_fetch tool to read a web page when the user gives you a URL or the answer needs it.`;

export const SEED_DOCUMENTS: Array<Record<string, unknown>> = [
  { apiVersion: 'agent.wecode.io/v1', kind: 'Shell', metadata: seedMeta('Chat', { labels: { type: 'direct_chat' } }), spec: { shellType: 'Chat', description: "The platform's own agent loop: chat with tools, skills and MCP servers." } },
  { apiVersion: 'agent.wecode.io/v1', kind: 'Shell', metadata: seedMeta('Code', { labels: { type: 'local_engine' } }), spec: { shellType: 'Code', description: 'The built-in coding agent: works on code inside a sandbox.' } },
  { apiVersion: 'agent.wecode.io/v1', kind: 'Shell', metadata: seedMeta('ClaudeCode', { labels: { type: 'local_engine' } }), spec: { shellType: 'ClaudeCode', engine: 'auto', description: 'Coding agent: the Claude Code CLI inside a sandbox when available, else the built-in coding agent.' } },
  { apiVersion: 'agent.wecode.io/v1', kind: 'Shell', metadata: seedMeta('Dify', { labels: { type: 'external_api' } }), spec: { shellType: 'Dify', description: "Calls a Dify app's streaming API." } },
  {
    apiVersion: 'agent.wecode.io/v1',
    kind: 'Model',
    metadata: seedMeta('demo-offline', { displayName: 'Offline demo model (not a real AI)', labels: { 'wegent.io/demo': 'true' } }),
    spec: {
      protocol: 'demo',
      description:
        'An offline demo model so that a fresh install works without any API key. It is not a real AI: it answers with canned, clearly marked text. To use a real model, create a Model resource (OpenAI, Anthropic, Google or any OpenAI-compatible endpoint) with your API key and pick it as your default model.',
    },
  },
  { apiVersion: 'agent.wecode.io/v1', kind: 'Ghost', metadata: seedMeta('wegent-assistant'), spec: { systemPrompt: ASSISTANT_PROMPT, description: 'A general helpful assistant.', tools: ['calculator', 'web_fetch'] } },
  { apiVersion: 'agent.wecode.io/v1', kind: 'Bot', metadata: seedMeta('wegent-assistant'), spec: { ghostRef: { name: 'wegent-assistant', namespace: 'default' }, shellRef: { name: 'Chat', namespace: 'default' } } },
  {
    apiVersion: 'agent.wecode.io/v1',
    kind: 'Team',
    metadata: seedMeta('wegent-chat', { displayName: 'Assistant' }),
    spec: { collaborationModel: 'solo', description: 'A general assistant to chat with.', members: [{ role: 'leader', botRef: { name: 'wegent-assistant', namespace: 'default' } }] },
  },
];
