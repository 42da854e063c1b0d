import { randomUUID } from 'node:crypto';
import type { Ref, SendResult } from '@wegent/core';
import type { AppContext } from '../app.js';
import { ApiError } from '../errors.js';
import { PUBLIC_OWNER, type ResourceRecord } from '../resources/store.js';
import type { TaskStatus } from '../tasks/state-machine.js';
import { streamKey } from '../tasks/turn-recorder.js';
import type { SendOptions } from '../tasks/service.js';
import { taskStore } from '../tasks/store.js';
import type { RunsTable } from '../storage/schema.js';
import { answerTurns, type FollowedItem } from './run-follower.js';

type Obj = Record<string, unknown>;
/** The caller, as the task service wants it. */
export interface Caller {
  userId: string;
  isAdmin: boolean;
  username: string;
}

/** OpenAI's `error.type` for an HTTP status (api.md §8.5). */
export function openaiErrorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 409) return 'conflict_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** An error on the OpenAI-compatible routes: a Status body plus OpenAI's `code` and `param` (api.md §8.5). */
export class OpenAIError extends ApiError {
  constructor(
    status: number,
    reason: ConstructorParameters<typeof ApiError>[1],
    message: string,
    readonly openai: { code: string | null; param: string | null },
    details: ApiError['details'] = {},
  ) {
    super(status, reason, message, details);
  }

  /** The same error with OpenAI's member added (`param` from its first field cause). */
  static from(err: ApiError): OpenAIError {
    if (err instanceof OpenAIError) return err;
    return new OpenAIError(err.code, err.reason, err.message, { code: null, param: err.details.causes?.[0]?.field ?? null }, err.details);
  }

  override toStatus(): ReturnType<ApiError['toStatus']> {
    return { ...super.toStatus(), error: openaiErrorMember(this.code, this.message, this.openai) } as ReturnType<ApiError['toStatus']>;
  }
}

const badRequest = (message: string, param: string | null, code: string | null = null) => new OpenAIError(400, 'BadRequest', message, { code, param });
const modelNotFound = (message: string) => new OpenAIError(404, 'NotFound', message, { code: 'model_not_found', param: 'model' });
const responseNotFound = (id: string) => new OpenAIError(404, 'NotFound', `response '${id}' not found`, { code: null, param: null });

/** The OpenAI `error` member for a Status body. */
export function openaiErrorMember(status: number, message: string, extra?: { code: string | null; param: string | null }): Obj {
  return { message, type: openaiErrorType(status), code: extra?.code ?? null, param: extra?.param ?? null };
}

/** A resolved `model` string (api.md §8.1). */
export interface ResolvedModel {
  canonical: string;
  team: ResourceRecord;
  modelOverride?: Ref;
}

const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** One message of the conversation a request brings, in order. */
interface InputMessage {
  role: 'user' | 'assistant' | 'system' | 'developer';
  text: string;
}

/** Run parameters that reach every model call (runtime.md §1 RunOverrides). */
interface Overrides {
  instructions?: string;
  temperature?: number;
  topP?: number;
  maxOutputTokens?: number;
}

/** What the Responses API stores on a run (returned by GET). */
interface ResponseMeta {
  api: 'responses' | 'chat.completions';
  model: string;
  instructions: string | null;
  metadata: Record<string, string>;
  previousResponseId: string | null;
  temperature: number | null;
  topP: number | null;
  maxOutputTokens: number | null;
  background: boolean;
}

/** A validated POST /responses body. */
export interface ResponseRequest {
  model: ResolvedModel;
  stream: boolean;
  background: boolean;
  previous?: { responseId: string; taskId: string };
  message: string;
  history: Array<{ role: 'user' | 'assistant'; text: string }>;
  overrides: Overrides;
  meta: ResponseMeta;
}

/** A validated POST /chat/completions body. */
export interface ChatRequest {
  model: ResolvedModel;
  stream: boolean;
  includeUsage: boolean;
  message: string;
  history: Array<{ role: 'user' | 'assistant'; text: string }>;
  overrides: Overrides;
  meta: ResponseMeta;
}

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function optionalNumber(body: Obj, key: string, min: number, max: number, integer = false): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw badRequest(`'${key}' must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}`, key, 'invalid_value');
  }
  return v;
}

function optionalBool(body: Obj, key: string): boolean {
  const v = body[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw badRequest(`'${key}' must be a boolean`, key, 'invalid_type');
  return v;
}

const TEXT_PARTS = new Set(['input_text', 'output_text', 'text']);

/** The text of a message's `content`: a string, or text parts joined with a line feed. */
function contentText(content: unknown, param: string): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw badRequest(`'${param}' must be a string or an array of text parts`, param, 'invalid_type');
  return content
    .map((part, i) => {
      if (!isObj(part) || typeof part.type !== 'string') throw badRequest(`'${param}[${i}]' must be a content part with a type`, `${param}[${i}]`, 'invalid_type');
      if (!TEXT_PARTS.has(part.type)) throw badRequest(`content parts of type '${part.type}' are not supported; only text is`, `${param}[${i}].type`, 'unsupported_value');
      if (typeof part.text !== 'string') throw badRequest(`'${param}[${i}].text' must be a string`, `${param}[${i}].text`, 'invalid_type');
      return part.text;
    })
    .join('\n');
}

/** Responses `input` as messages (api.md §8.2): a string is one user message. */
function responseInput(input: unknown): InputMessage[] {
  if (input === undefined || input === null) throw badRequest("missing required parameter: 'input'", 'input', 'missing_required_parameter');
  if (typeof input === 'string') return [{ role: 'user', text: input }];
  if (!Array.isArray(input)) throw badRequest("'input' must be a string or an array of items", 'input', 'invalid_type');
  if (input.length === 0) throw badRequest("'input' must not be empty", 'input', 'empty_array');
  return input.map((item, i) => {
    const param = `input[${i}]`;
    if (!isObj(item)) throw badRequest(`'${param}' must be an object`, param, 'invalid_type');
    if (item.type !== undefined && item.type !== 'message') throw badRequest(`input items of type '${String(item.type)}' are not supported; only messages are`, `${param}.type`, 'unsupported_value');
    if (!['user', 'assistant', 'system', 'developer'].includes(item.role as string)) throw badRequest(`'${param}.role' must be one of user, assistant, system, developer`, `${param}.role`, 'invalid_value');
    return { role: item.role as InputMessage['role'], text: contentText(item.content, `${param}.content`) };
  });
}

/** Chat completions `messages` (api.md §8.3). */
function chatMessages(messages: unknown): InputMessage[] {
  if (messages === undefined || messages === null) throw badRequest("missing required parameter: 'messages'", 'messages', 'missing_required_parameter');
  if (!Array.isArray(messages) || messages.length === 0) throw badRequest("'messages' must be a non-empty array", 'messages', 'invalid_type');
  return messages.map((m, i) => {
    const param = `messages[${i}]`;
    if (!isObj(m)) throw badRequest(`'${param}' must be an object`, param, 'invalid_type');
    if (!['user', 'assistant', 'system', 'developer'].includes(m.role as string)) throw badRequest(`messages with role '${String(m.role)}' are not supported`, `${param}.role`, 'unsupported_value');
    if (m.role === 'assistant' && (m.tool_calls !== undefined || m.function_call !== undefined)) throw badRequest('tool calls are not supported', `${param}.tool_calls`, 'unsupported_value');
    if (m.audio !== undefined && m.audio !== null) throw badRequest('audio is not supported', `${param}.audio`, 'unsupported_value');
    return { role: m.role as InputMessage['role'], text: contentText(m.content ?? '', `${param}.content`) };
  });
}

/** Splits a conversation into history, instructions and the run's message (the last user item). */
function splitConversation(items: InputMessage[], param: string): { history: Array<{ role: 'user' | 'assistant'; text: string }>; instructions: string[]; message: string } {
  const last = items[items.length - 1]!;
  if (last.role !== 'user') throw badRequest(`the last item of '${param}' must be a user message`, `${param}[${items.length - 1}].role`, 'invalid_value');
  const history: Array<{ role: 'user' | 'assistant'; text: string }> = [];
  const instructions: string[] = [];
  for (const item of items.slice(0, -1)) {
    if (item.role === 'system' || item.role === 'developer') instructions.push(item.text);
    else history.push({ role: item.role, text: item.text });
  }
  return { history, instructions, message: last.text };
}

const RESPONSE_ID = /^resp_([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;
const unix = (iso: string) => Math.floor(Date.parse(iso) / 1000);

/** Response status from the run's status (api.md §8.2 status mapping). */
function responseStatus(status: string): string {
  switch (status) {
    case 'PENDING':
      return 'queued';
    case 'RUNNING':
    case 'CANCELLING':
      return 'in_progress';
    case 'PENDING_CONFIRMATION':
      return 'incomplete';
    case 'COMPLETED':
      return 'completed';
    case 'FAILED':
      return 'failed';
    default:
      return 'cancelled';
  }
}

/** A run with its task, as the Responses API reads it. */
interface RunView {
  run: RunsTable;
  taskStatus: TaskStatus;
  /** The run's own status: the task's while it is the current run, else the stored run status. */
  status: string;
  error: { code: string; message: string } | null;
  meta?: ResponseMeta;
  teamModel: string;
}

/**
 * The OpenAI-compatible API (api.md §8) over the task service: a response is a run, its items are
 * the run's visible answer turns, and a response chain is one task.
 */
export class OpenAIService {
  constructor(private readonly ctx: AppContext) {}

  /** Resolves a `model` string to a Team and an optional Model override (api.md §8.1). */
  async resolveModel(userId: string, model: unknown): Promise<ResolvedModel> {
    if (model === undefined || model === null) throw badRequest("missing required parameter: 'model'", 'model', 'missing_required_parameter');
    if (typeof model !== 'string') throw badRequest("'model' must be a string", 'model', 'invalid_type');
    const parts = model.split('#');
    const [ns, teamName, modelName] = parts.length === 1 ? ['default', parts[0]!, undefined] : [parts[0]!, parts[1]!, parts[2]];
    if (parts.length > 3 || !NAME.test(ns) || !NAME.test(teamName) || ns.length > 63 || teamName.length > 63 || (modelName !== undefined && (!NAME.test(modelName) || modelName.length > 63))) {
      throw modelNotFound(`model '${model.slice(0, 200)}' does not name a team ('namespace#team' or 'namespace#team#model')`);
    }
    const team = await this.ctx.resources.resolveRef(userId, 'Team', { name: teamName, namespace: ns }, ns);
    if (!team) throw modelNotFound(`team '${ns}#${teamName}' not found`);
    let canonical = `${team.record.namespace}#${team.record.name}`;
    let modelOverride: Ref | undefined;
    if (modelName !== undefined) {
      const found = (await this.ctx.resources.resolveRef(userId, 'Model', { name: modelName, namespace: ns }, ns)) ?? (await this.ctx.resources.resolveRef(null, 'Model', { name: modelName, namespace: 'default' }, 'default'));
      if (!found) throw modelNotFound(`model '${modelName}' not found in namespace '${ns}'`);
      modelOverride = { name: found.record.name, namespace: found.record.namespace };
      canonical += `#${modelName}`;
    }
    return { canonical, team: team.record, modelOverride };
  }

  /** Common run parameters of both create routes. */
  private overrides(body: Obj, maxTokensKeys: string[]): { overrides: Overrides; temperature: number | null; topP: number | null; maxOutputTokens: number | null } {
    const temperature = optionalNumber(body, 'temperature', 0, 2);
    const topP = optionalNumber(body, 'top_p', 0, 1);
    let maxOutputTokens: number | undefined;
    for (const key of maxTokensKeys) maxOutputTokens ??= optionalNumber(body, key, 1, 10_000_000, true);
    const overrides: Overrides = {};
    if (temperature !== undefined) overrides.temperature = temperature;
    if (topP !== undefined) overrides.topP = topP;
    if (maxOutputTokens !== undefined) overrides.maxOutputTokens = maxOutputTokens;
    return { overrides, temperature: temperature ?? null, topP: topP ?? null, maxOutputTokens: maxOutputTokens ?? null };
  }

  /** The run's message must say something; no message may exceed the chat message limit (api.md §2.9). */
  private checkTexts(texts: string[], param: string): void {
    if (texts[0]!.trim() === '') throw badRequest(`the user message of '${param}' must contain a non-whitespace character`, param, 'invalid_value');
    const max = this.ctx.config.maxMessageChars;
    if (texts.some((t) => t.length > max)) throw new OpenAIError(422, 'Invalid', `a message of '${param}' is longer than ${max} characters`, { code: 'string_above_max_length', param });
  }

  /** Validates POST /responses (api.md §8.2); nothing is written. */
  async parseResponseRequest(caller: Caller, raw: unknown): Promise<ResponseRequest> {
    if (!isObj(raw)) throw badRequest('the request body must be a JSON object', null);
    const body = raw;
    if (body.conversation !== undefined && body.conversation !== null) throw badRequest("'conversation' is not supported; use previous_response_id", 'conversation', 'unsupported_parameter');
    if (body.tools !== undefined && body.tools !== null) {
      if (!Array.isArray(body.tools)) throw badRequest("'tools' must be an array", 'tools', 'invalid_type');
      // Only Wegent's own tool types are accepted (they live in the Team); anything an OpenAI client defines is not.
      body.tools.forEach((t, i) => {
        if (!isObj(t) || typeof t.type !== 'string' || !t.type.startsWith('wegent')) throw badRequest('client-side tools are not supported', `tools[${i}]`, 'unsupported_value');
      });
    }
    if (body.instructions !== undefined && body.instructions !== null && typeof body.instructions !== 'string') throw badRequest("'instructions' must be a string", 'instructions', 'invalid_type');
    const metadata: Record<string, string> = {};
    if (body.metadata !== undefined && body.metadata !== null) {
      if (!isObj(body.metadata)) throw badRequest("'metadata' must be an object of strings", 'metadata', 'invalid_type');
      const entries = Object.entries(body.metadata);
      if (entries.length > 16) throw badRequest("'metadata' holds at most 16 pairs", 'metadata', 'invalid_value');
      for (const [k, v] of entries) {
        if (typeof v !== 'string' || k.length > 64 || v.length > 512) throw badRequest(`'metadata.${k.slice(0, 64)}' must be a string of at most 512 characters (keys at most 64)`, `metadata.${k.slice(0, 64)}`, 'invalid_value');
        metadata[k] = v;
      }
    }
    const stream = optionalBool(body, 'stream');
    const background = optionalBool(body, 'background');
    const params = this.overrides(body, ['max_output_tokens']);
    const items = responseInput(body.input);
    const model = await this.resolveModel(caller.userId, body.model);
    const instructions = typeof body.instructions === 'string' && body.instructions !== '' ? [body.instructions] : [];
    let previous: ResponseRequest['previous'];
    let message: string;
    let history: ResponseRequest['history'] = [];
    if (body.previous_response_id !== undefined && body.previous_response_id !== null) {
      const id = body.previous_response_id;
      if (typeof id !== 'string') throw badRequest("'previous_response_id' must be a string", 'previous_response_id', 'invalid_type');
      const view = await this.ownedRun(caller.userId, id).catch(() => {
        throw new OpenAIError(404, 'NotFound', `previous response '${id.slice(0, 100)}' not found`, { code: 'previous_response_not_found', param: 'previous_response_id' });
      });
      const taskTeam = (await this.ctx.resources.store.findLiveByUid(view.run.task_id))?.spec.teamRef as Ref | undefined;
      if (taskTeam && (taskTeam.name !== model.team.name || (taskTeam.namespace ?? 'default') !== model.team.namespace)) {
        throw badRequest(`previous_response_id belongs to team '${taskTeam.namespace ?? 'default'}#${taskTeam.name}', not '${model.team.namespace}#${model.team.name}'`, 'model', 'invalid_value');
      }
      const users: string[] = [];
      items.forEach((item, i) => {
        if (item.role === 'assistant') throw badRequest('with previous_response_id, input may hold only user, system and developer items', `input[${i}].role`, 'invalid_value');
        if (item.role === 'user') users.push(item.text);
        else instructions.push(item.text);
      });
      if (!users.length) throw badRequest("'input' must hold a user message", 'input', 'invalid_value');
      message = users.join('\n\n');
      previous = { responseId: id, taskId: view.run.task_id };
    } else {
      const split = splitConversation(items, 'input');
      instructions.push(...split.instructions);
      history = split.history;
      message = split.message;
    }
    this.checkTexts([message, ...history.map((h) => h.text)], 'input');
    const joined = instructions.join('\n\n');
    const overrides: Overrides = { ...params.overrides, ...(joined ? { instructions: joined } : {}) };
    const meta: ResponseMeta = {
      api: 'responses',
      model: model.canonical,
      instructions: typeof body.instructions === 'string' ? body.instructions : null,
      metadata,
      previousResponseId: previous?.responseId ?? null,
      temperature: params.temperature,
      topP: params.topP,
      maxOutputTokens: params.maxOutputTokens,
      background,
    };
    return { model, stream, background, previous, message, history, overrides, meta };
  }

  /** Validates POST /chat/completions (api.md §8.3); nothing is written. */
  async parseChatRequest(caller: Caller, raw: unknown): Promise<ChatRequest> {
    if (!isObj(raw)) throw badRequest('the request body must be a JSON object', null);
    const body = raw;
    const n = body.n;
    if (n !== undefined && n !== null && n !== 1) throw badRequest("'n' must be 1", 'n', 'unsupported_value');
    for (const key of ['tools', 'functions']) {
      if (body[key] !== undefined && body[key] !== null) throw badRequest('client-side tools are not supported', key, 'unsupported_parameter');
    }
    const format = body.response_format;
    if (format !== undefined && format !== null && !(isObj(format) && format.type === 'text')) throw badRequest("only response_format {type: 'text'} is supported", 'response_format', 'unsupported_value');
    const stream = optionalBool(body, 'stream');
    const so = body.stream_options;
    const includeUsage = isObj(so) && so.include_usage === true;
    const params = this.overrides(body, ['max_completion_tokens', 'max_tokens']);
    const items = chatMessages(body.messages);
    const model = await this.resolveModel(caller.userId, body.model);
    const split = splitConversation(items, 'messages');
    this.checkTexts([split.message, ...split.history.map((h) => h.text)], 'messages');
    const joined = split.instructions.join('\n\n');
    const overrides: Overrides = { ...params.overrides, ...(joined ? { instructions: joined } : {}) };
    const meta: ResponseMeta = { api: 'chat.completions', model: model.canonical, instructions: null, metadata: {}, previousResponseId: null, temperature: params.temperature, topP: params.topP, maxOutputTokens: params.maxOutputTokens, background: false };
    return { model, stream, includeUsage, message: split.message, history: split.history, overrides, meta };
  }

  /** Starts the run of a validated request: a new task, or a new run of the previous response's task. */
  async start(caller: Caller, req: ResponseRequest | ChatRequest, key: string, beforeCommit?: (taskId: string) => void): Promise<SendResult> {
    const runInput = { overrides: req.overrides, openai: req.meta };
    const source: SendOptions['source'] = req.meta.api === 'responses' ? 'api' : 'chat-completions';
    const previous = 'previous' in req ? req.previous : undefined;
    if (previous) {
      return this.ctx.tasks.send(caller, { clientMessageId: key, taskId: previous.taskId, message: req.message, modelOverride: req.model.modelOverride }, { source, runInput, beforeCommit });
    }
    return this.ctx.tasks.send(
      caller,
      { clientMessageId: key, teamRef: { name: req.model.team.name, namespace: req.model.team.namespace }, message: req.message, modelOverride: req.model.modelOverride },
      { source, runInput, importedHistory: req.history, beforeCommit },
    );
  }

  /** The run behind a response id, when the caller owns its task (else 404, never 403). */
  async ownedRun(userId: string, responseId: string): Promise<RunView> {
    const m = RESPONSE_ID.exec(responseId);
    if (!m) throw responseNotFound(responseId.slice(0, 100));
    const db = this.ctx.storage.db;
    const run = await db.selectFrom('runs').selectAll().where('id', '=', m[1]!.toLowerCase()).executeTakeFirst();
    const state = run ? await db.selectFrom('task_state').selectAll().where('task_id', '=', run.task_id).executeTakeFirst() : undefined;
    if (!run || !state || state.owner_id !== userId || state.deleted_at) throw responseNotFound(responseId);
    const current = state.run_seq === run.run_seq;
    const status = current ? state.status : run.status;
    let error: RunView['error'] = null;
    if (status === 'FAILED') {
      if (current && state.status_reason) error = { code: state.status_reason.toLowerCase(), message: state.error_message ?? '' };
      else {
        const failed = (await db.selectFrom('messages').select(['status_reason', 'error']).where('run_id', '=', run.id).where('status', '=', 'FAILED').orderBy('seq').executeTakeFirst()) ?? null;
        const e = failed?.error ? (JSON.parse(failed.error) as { code?: string; message?: string }) : {};
        error = { code: (failed?.status_reason ?? e.code ?? 'internal').toLowerCase(), message: e.message ?? '' };
      }
    }
    const input = JSON.parse(run.input) as { openai?: ResponseMeta };
    const task = await this.ctx.resources.store.findLiveByUid(run.task_id);
    const teamRef = (task?.spec.teamRef ?? {}) as Ref;
    return { run, taskStatus: state.status as TaskStatus, status, error, meta: input.openai, teamModel: `${teamRef.namespace ?? 'default'}#${teamRef.name}` };
  }

  /** Token totals of every turn of a run. */
  async runUsage(runId: string): Promise<{ input: number; output: number; cached: number; reasoning: number }> {
    const t = await taskStore.usageTotals(this.ctx.storage.db, { runId });
    return { input: t.inputTokens, output: t.outputTokens, cached: t.cachedInputTokens, reasoning: t.reasoningTokens };
  }

  /** The visible answer items of a run from storage (a running turn shows its text so far). */
  async storedItems(runId: string): Promise<FollowedItem[]> {
    const items: FollowedItem[] = [];
    for (const t of await answerTurns(this.ctx, runId)) {
      if (t.status === 'PENDING' || !t.started_at) continue;
      const live = t.status === 'RUNNING' ? await this.ctx.runtime?.cache.getRange(streamKey(t.id, 'text'), 0) : null;
      items.push({ turnId: t.id, index: items.length, text: live?.text ?? t.content, status: t.status === 'RUNNING' ? 'in_progress' : t.status === 'COMPLETED' ? 'completed' : 'incomplete', finishReason: t.status === 'COMPLETED' ? (t.status_reason ?? 'stop') : undefined });
    }
    return items;
  }

  /**
   * The response object of a run (api.md §8.2). `at` forces a lifecycle status and `items` the output
   * (what a stream has sent so far); otherwise both come from storage.
   */
  async responseObject(userId: string, responseId: string, opts: { status?: string; items?: FollowedItem[] } = {}): Promise<Obj> {
    const view = await this.ownedRun(userId, responseId);
    const status = opts.status ?? view.status;
    const items = opts.items ?? (await this.storedItems(view.run.id));
    const usage = await this.runUsage(view.run.id);
    const meta = view.meta;
    const settled = ['COMPLETED', 'FAILED', 'CANCELLED', 'PENDING_CONFIRMATION'].includes(status);
    return {
      id: `resp_${view.run.id}`,
      object: 'response',
      created_at: unix(view.run.created_at),
      status: responseStatus(status),
      model: meta?.model ?? view.teamModel,
      output: items.map(outputItem),
      error: status === 'FAILED' ? (view.error ?? { code: 'internal', message: '' }) : null,
      incomplete_details: status === 'PENDING_CONFIRMATION' ? { reason: 'awaiting_confirmation' } : null,
      instructions: meta?.instructions ?? null,
      metadata: meta?.metadata ?? {},
      previous_response_id: meta?.previousResponseId ?? null,
      usage: settled ? { input_tokens: usage.input, output_tokens: usage.output, total_tokens: usage.input + usage.output, input_tokens_details: { cached_tokens: usage.cached }, output_tokens_details: { reasoning_tokens: usage.reasoning } } : null,
      parallel_tool_calls: false,
      tool_choice: 'auto',
      tools: [],
      temperature: meta?.temperature ?? null,
      top_p: meta?.topP ?? null,
      max_output_tokens: meta?.maxOutputTokens ?? null,
      text: { format: { type: 'text' } },
      truncation: 'disabled',
      store: true,
      background: meta?.background ?? false,
      wegent: { taskId: view.run.task_id, runSeq: view.run.run_seq, taskStatus: view.taskStatus },
    };
  }

  /** Cancels the run of a response if it is the task's current, unfinished run. */
  async cancel(userId: string, responseId: string): Promise<{ taskId: string; runId: string; runSeq: number; active: boolean }> {
    const view = await this.ownedRun(userId, responseId);
    const active = !['COMPLETED', 'FAILED', 'CANCELLED'].includes(view.status);
    if (active) await this.ctx.tasks.cancel(userId, view.run.task_id);
    return { taskId: view.run.task_id, runId: view.run.id, runSeq: view.run.run_seq, active };
  }

  /** Deletes the task a response belongs to (a response chain is one task). */
  async delete(userId: string, responseId: string): Promise<void> {
    const view = await this.ownedRun(userId, responseId);
    await this.ctx.tasks.delete(userId, view.run.task_id);
  }

  /** The caller's own Teams and every public Team as OpenAI models, sorted by id (api.md §8.4). */
  async models(caller: Caller): Promise<Obj[]> {
    const byId = new Map<string, Obj>();
    let after: [string, string, number] | undefined;
    for (;;) {
      const page = await this.ctx.resources.list(caller, 'Team', { limit: 500, after, scope: 'all' });
      for (const r of page.items) {
        const id = `${r.namespace}#${r.name}`;
        const own = r.ownerId !== PUBLIC_OWNER;
        // The caller's own Team shadows a public one of the same name, as resolution does.
        if (byId.has(id) && !own) continue;
        byId.set(id, { id, object: 'model', created: unix(r.createdAt), owned_by: own ? 'user' : 'system' });
      }
      if (!page.more || !page.last) break;
      after = page.last;
    }
    return [...byId.values()].sort((a, b) => (String(a.id) < String(b.id) ? -1 : String(a.id) > String(b.id) ? 1 : 0));
  }

  /** One model by id (`ns#team`), or 404 model_not_found. */
  async model(caller: Caller, id: string): Promise<Obj> {
    const parts = id.split('#');
    if (parts.length !== 2) throw modelNotFound(`model '${id.slice(0, 200)}' not found`);
    const resolved = await this.resolveModel(caller.userId, id).catch(() => {
      throw modelNotFound(`model '${id.slice(0, 200)}' not found`);
    });
    const r = resolved.team;
    return { id: `${r.namespace}#${r.name}`, object: 'model', created: unix(r.createdAt), owned_by: r.ownerId === PUBLIC_OWNER ? 'system' : 'user' };
  }

  /** A fresh idempotency key when the client sent none. */
  static autoKey(): string {
    return `auto-${randomUUID()}`;
  }
}

/** A message output item (api.md §8.2). */
export function outputItem(item: FollowedItem): Obj {
  return { type: 'message', id: `msg_${item.turnId}`, status: item.status, role: 'assistant', content: [{ type: 'output_text', text: item.text, annotations: [] }] };
}
