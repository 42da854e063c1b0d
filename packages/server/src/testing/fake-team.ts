/**
 * A Model → Ghost → Bot → Team chain (multi-document YAML) whose Model points at the fake model server,
 * for tests that chat with a scripted model. Names default to `fake`, `g`, `b`, `t`.
 */
export function fakeTeamManifest(baseUrl: string, names: { model?: string; ghost?: string; bot?: string; team?: string; modelId?: string; tools?: string[] } = {}): string {
  const model = names.model ?? 'fake';
  const ghost = names.ghost ?? 'g';
  const bot = names.bot ?? 'b';
  const team = names.team ?? 't';
  return `kind: Model
metadata: {name: ${model}}
spec: {protocol: openai-compatible, modelId: ${names.modelId ?? 'fake-model'}, baseUrl: "${baseUrl}", apiKey: sk-test-0123456789}
---
kind: Ghost
metadata: {name: ${ghost}}
spec: {systemPrompt: You are terse., tools: [${(names.tools ?? []).join(', ')}]}
---
kind: Bot
metadata: {name: ${bot}}
spec: {ghostRef: {name: ${ghost}}, shellRef: {name: Chat}, modelRef: {name: ${model}}}
---
kind: Team
metadata: {name: ${team}}
spec: {members: [{botRef: {name: ${bot}}, role: leader}]}
`;
}
