// Test support for the runtime and its users: the fake model server (runtime.md §17).
//
//   const fake = await startFakeModelServer();
//   fake.script([{ steps: [{ text: 'Hel' }, { text: 'lo' }, { usage: { inputTokens: 5, outputTokens: 2 } }] }]);
//   const model = createOpenAI({ apiKey: 'k', baseURL: fake.openaiBaseUrl }).chat('gpt-4o-mini');
//   … run the code under test …
//   expect(fake.requests[0].body.messages).toEqual([…]);
//   await fake.close();
export { startFakeModelServer, type FakeModelServer, type StartFakeModelServerOptions } from './fake-model-server/server.js';
export type {
  FakeCutStep,
  FakeDelayHeadersStep,
  FakeDelayStep,
  FakeEndpoint,
  FakeError,
  FakeErrorStep,
  FakeFinishReason,
  FakeHangStep,
  FakeJsonStep,
  FakeProtocol,
  FakeReasoningStep,
  FakeRecordedRequest,
  FakeReply,
  FakeReplyInput,
  FakeReplyMatch,
  FakeStep,
  FakeTextStep,
  FakeToolCall,
  FakeToolCallStep,
  FakeUsage,
  FakeUsageStep,
} from './fake-model-server/script.js';
