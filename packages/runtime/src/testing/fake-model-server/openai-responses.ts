// OpenAI Responses: `POST /v1/responses`, JSON and SSE (`response.created` … `response.completed`).
import {
  argumentsText,
  contentText,
  fragments,
  isRecord,
  joinDefined,
  lastUserText,
  sseEvent,
  type Dialect,
  type OutputPart,
  type ReplyContext,
  type StreamEncoder,
} from './dialect.js';
import { openaiErrorAnswer } from './openai-chat.js';
import type { FakeUsage } from './script.js';

function responsesUsage(usage: FakeUsage): Record<string, unknown> {
  return {
    input_tokens: usage.inputTokens,
    input_tokens_details: { cached_tokens: usage.cachedInputTokens ?? 0 },
    output_tokens: usage.outputTokens,
    output_tokens_details: { reasoning_tokens: usage.reasoningTokens ?? 0 },
    total_tokens: usage.inputTokens + usage.outputTokens,
  };
}

type OpenItem =
  | { kind: 'message'; id: string; outputIndex: number; text: string }
  | { kind: 'reasoning'; id: string; outputIndex: number; text: string };

/**
 * Builds the event sequence of one response. It also keeps the finished output items, so the
 * non-streaming answer is the same response object the stream's last event carries.
 */
class ResponseBuilder implements StreamEncoder {
  readonly id: string;
  private sequence = 0;
  private readonly output: unknown[] = [];
  private current: OpenItem | undefined;

  constructor(private readonly ctx: ReplyContext) {
    this.id = ctx.newId('resp_');
  }

  open(): string[] {
    return [
      this.event('response.created', { response: this.response('in_progress', []) }),
      this.event('response.in_progress', { response: this.response('in_progress', []) }),
    ];
  }

  part(part: OutputPart): string[] {
    switch (part.kind) {
      case 'text':
        return this.text(part.text);
      case 'json':
        return this.text(JSON.stringify(part.value));
      case 'reasoning':
        return this.reasoning(part.text);
      case 'toolCall': {
        const frames = this.closeCurrent();
        const outputIndex = this.output.length;
        const item = {
          id: this.ctx.newId('fc_'),
          type: 'function_call',
          status: 'in_progress',
          arguments: '',
          call_id: part.call.id ?? this.ctx.newId('call_'),
          name: part.call.name,
        };
        const args = argumentsText(part.call);
        const done = { ...item, status: 'completed', arguments: args };
        this.output.push(done);
        frames.push(this.event('response.output_item.added', { output_index: outputIndex, item }));
        for (const delta of fragments(args)) {
          frames.push(this.event('response.function_call_arguments.delta', { item_id: item.id, output_index: outputIndex, delta }));
        }
        frames.push(this.event('response.function_call_arguments.done', { item_id: item.id, output_index: outputIndex, arguments: args }));
        frames.push(this.event('response.output_item.done', { output_index: outputIndex, item: done }));
        return frames;
      }
    }
  }

  error(error: Parameters<StreamEncoder['error']>[0]): string[] {
    const body = openaiErrorAnswer(error, this.ctx.model).body as { error: { message: string; code: string | null; param: string | null } };
    return [this.event('error', { code: body.error.code, message: body.error.message, param: body.error.param })];
  }

  close(): string[] {
    const frames = this.closeCurrent();
    const final = this.finalResponse();
    frames.push(this.event(final.status === 'completed' ? 'response.completed' : 'response.incomplete', { response: final }));
    return frames;
  }

  /** The response object of the finished reply. */
  finalResponse(): Record<string, unknown> & { status: string } {
    const reason = this.ctx.finishReason;
    const incomplete = reason === 'length' ? 'max_output_tokens' : reason === 'content_filter' ? 'content_filter' : undefined;
    return {
      ...this.response(incomplete === undefined ? 'completed' : 'incomplete', this.output),
      incomplete_details: incomplete === undefined ? null : { reason: incomplete },
      usage: this.ctx.usage === undefined ? null : responsesUsage(this.ctx.usage),
    };
  }

  private text(delta: string): string[] {
    const frames: string[] = [];
    if (this.current?.kind !== 'message') {
      frames.push(...this.closeCurrent());
      const item = { kind: 'message' as const, id: this.ctx.newId('msg_'), outputIndex: this.output.length, text: '' };
      this.output.push(undefined); // reserves the index; replaced when the item is done
      this.current = item;
      frames.push(
        this.event('response.output_item.added', {
          output_index: item.outputIndex,
          item: { id: item.id, type: 'message', status: 'in_progress', content: [], role: 'assistant' },
        }),
        this.event('response.content_part.added', {
          item_id: item.id,
          output_index: item.outputIndex,
          content_index: 0,
          part: { type: 'output_text', annotations: [], logprobs: [], text: '' },
        }),
      );
    }
    const item = this.current!;
    item.text += delta;
    frames.push(
      this.event('response.output_text.delta', { item_id: item.id, output_index: item.outputIndex, content_index: 0, delta, logprobs: [] }),
    );
    return frames;
  }

  private reasoning(delta: string): string[] {
    const frames: string[] = [];
    if (this.current?.kind !== 'reasoning') {
      frames.push(...this.closeCurrent());
      const item = { kind: 'reasoning' as const, id: this.ctx.newId('rs_'), outputIndex: this.output.length, text: '' };
      this.output.push(undefined);
      this.current = item;
      frames.push(
        this.event('response.output_item.added', { output_index: item.outputIndex, item: { id: item.id, type: 'reasoning', summary: [] } }),
        this.event('response.reasoning_summary_part.added', {
          item_id: item.id,
          output_index: item.outputIndex,
          summary_index: 0,
          part: { type: 'summary_text', text: '' },
        }),
      );
    }
    const item = this.current!;
    item.text += delta;
    frames.push(
      this.event('response.reasoning_summary_text.delta', { item_id: item.id, output_index: item.outputIndex, summary_index: 0, delta }),
    );
    return frames;
  }

  private closeCurrent(): string[] {
    const item = this.current;
    if (item === undefined) return [];
    this.current = undefined;
    const at = { item_id: item.id, output_index: item.outputIndex };
    if (item.kind === 'message') {
      const part = { type: 'output_text', annotations: [], logprobs: [], text: item.text };
      const done = { id: item.id, type: 'message', status: 'completed', content: [part], role: 'assistant' };
      this.output[item.outputIndex] = done;
      return [
        this.event('response.output_text.done', { ...at, content_index: 0, text: item.text, logprobs: [] }),
        this.event('response.content_part.done', { ...at, content_index: 0, part }),
        this.event('response.output_item.done', { output_index: item.outputIndex, item: done }),
      ];
    }
    const part = { type: 'summary_text', text: item.text };
    const done = { id: item.id, type: 'reasoning', summary: [part] };
    this.output[item.outputIndex] = done;
    return [
      this.event('response.reasoning_summary_text.done', { ...at, summary_index: 0, text: item.text }),
      this.event('response.reasoning_summary_part.done', { ...at, summary_index: 0, part }),
      this.event('response.output_item.done', { output_index: item.outputIndex, item: done }),
    ];
  }

  private response(status: string, output: readonly unknown[]): Record<string, unknown> & { status: string } {
    const body = isRecord(this.ctx.request.body) ? this.ctx.request.body : {};
    return {
      id: this.id,
      object: 'response',
      created_at: this.ctx.created,
      status,
      background: false,
      error: null,
      incomplete_details: null,
      instructions: body.instructions ?? null,
      max_output_tokens: body.max_output_tokens ?? null,
      model: this.ctx.model,
      output: [...output],
      parallel_tool_calls: body.parallel_tool_calls ?? true,
      previous_response_id: body.previous_response_id ?? null,
      reasoning: { effort: null, summary: null },
      store: body.store ?? true,
      temperature: body.temperature ?? 1,
      text: { format: { type: 'text' } },
      tool_choice: body.tool_choice ?? 'auto',
      tools: body.tools ?? [],
      top_p: body.top_p ?? 1,
      truncation: 'disabled',
      usage: null,
      user: null,
      metadata: {},
    };
  }

  private event(type: string, payload: Record<string, unknown>): string {
    return sseEvent(type, { type, sequence_number: this.sequence++, ...payload });
  }
}

function inputText(item: Record<string, unknown>): string | undefined {
  return contentText(item.content, ['input_text', 'output_text', 'text']);
}

export const openaiResponsesDialect: Dialect = {
  protocol: 'openai-responses',

  describe(body) {
    const b = isRecord(body) ? body : {};
    const input = b.input;
    const items = Array.isArray(input) ? input : [];
    const system = items
      .filter((m): m is Record<string, unknown> => isRecord(m) && (m.role === 'system' || m.role === 'developer'))
      .map(inputText);
    return {
      model: typeof b.model === 'string' ? b.model : undefined,
      stream: b.stream === true,
      lastUserText: typeof input === 'string' ? input : lastUserText(items, (m) => m.role, inputText),
      systemText: joinDefined([typeof b.instructions === 'string' ? b.instructions : undefined, ...system]),
    };
  },

  errorAnswer: openaiErrorAnswer,

  openStream: (ctx) => new ResponseBuilder(ctx),

  completeBody(parts, ctx) {
    const builder = new ResponseBuilder(ctx);
    builder.open();
    for (const part of parts) builder.part(part);
    builder.close();
    return builder.finalResponse();
  },
};
