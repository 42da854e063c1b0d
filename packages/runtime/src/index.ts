/** The Wegent agent runtime: executes run steps and reports runtime events; knows nothing of HTTP or storage. */
export { executeRun, type RunServices } from './run/execute-run.js';
export type {
  ContextPassing,
  PipelineInput,
  PipelineStageOutput,
  HistoryMessage,
  ModelConnection,
  ModelProtocol,
  ResolvedMember,
  ResolvedResource,
  ResolvedSkill,
  RunHost,
  RunInput,
  RunOutcome,
  RunOverrides,
  RunRequest,
  RuntimeConfig,
  TurnSpec,
} from './run/types.js';
export { resolveRuntimeConfig, type ResolvedRuntimeConfig } from './run/runtime-config.js';

export { assembleSystemPrompt, type SystemPromptParts } from './prompt/system-prompt.js';
export { historyMessages } from './prompt/history.js';
export { leaderIndex, memberNames } from './prompt/member-names.js';
export { cutChars, oneLine } from './prompt/text-forms.js';

export { createLanguageModel, isChatProtocol, DEFAULT_BASE_URLS } from './models/providers.js';
export { DemoLanguageModel, DEMO_LABEL, DEMO_NOTICE } from './models/demo-model.js';
export { mapModelError, type TurnError } from './models/model-errors.js';

export {
  addressPolicy,
  checkModelEndpoint,
  modelAddressPolicy,
  resolveAllowedAddresses,
  AddressRefusedError,
  type AddressPolicy,
  type EndpointCheck,
  type HostResolver,
  type ResolvedAddress,
} from './network/address-policy.js';
export { classifyIp, parseIp, type AddressClass } from './network/ip-address.js';
export { createPinnedFetch, type PinnedFetch } from './network/pinned-http.js';

export { calculatorTool, evaluateExpression, formatNumber } from './tools/calculator.js';
export { webFetch, webFetchTool, type WebFetchOptions, type WebFetchResult } from './tools/web-fetch.js';
export { builtinTools, DEFAULT_GHOST_TOOLS } from './tools/builtin-tools.js';
export { ToolError, type RuntimeTool, type ToolContext } from './tools/tool.js';

export { capToolOutput } from './context/tool-output-cap.js';
export { contextBudget, estimatePrompt, estimateTokens } from './context/token-budget.js';
