// Anthropic Messages: `POST /v1/messages`, JSON and SSE (`message_start` … `message_stop`).
import {
  argumentsObject,
  argumentsText,
  contentText,
  fragments,
  isRecord,
  lastUserText,
  mergeTextParts,
  sseEvent,
  type Dialect,
  type JsonAnswer,
  type OutputPart,
  type ReplyContext,
  type StreamEncoder,
} from './dialect.js';
import type { FakeError, FakeToolCall, FakeUsage } from './script.js';

const THINKING_SIGNATURE = 'fake-thinking-signature';

function anthropicError(error: FakeError, model: string | undefined): { type: string; message: string } {
  if (error.code === 'context_length_exceeded') {
    return { type: error.type ?? 'invalid_request_error', message: error.message ?? 'prompt is too long: 210000 tokens > 200000 maximum' };
  }
  const [type, message] = ((): [string, string] => {
    switch (error.status) {
      case 400:
        return ['invalid_request_error', 'Invalid request.'];
      case 401:
        return ['authentication_error', 'invalid x-api-key'];
      case 403:
        return ['permission_error', 'Your API key does not have permission to use the specified resource.'];
      case 404:
        return ['not_found_error', `model: ${model ?? 'unknown'}`];
      case 413:
        return ['request_too_large', 'Request exceeds the maximum allowed number of bytes.'];
      case 429:
        return ['rate_limit_error', 'Number of request tokens has exceeded your per-minute rate limit. Please try again later.'];
      case 529:
        return ['overloaded_error', 'Overloaded'];
      default:
        return error.status >= 500 ? ['api_error', 'Internal server error'] : ['invalid_request_error', `HTTP ${error.status}`];
    }
  })();
  return { type: error.type ?? type, message: error.message ?? message };
}

function anthropicErrorAnswer(error: FakeError, model: string | undefined): JsonAnswer {
  return { status: error.status, body: { type: 'error', error: anthropicError(error, model), request_id: 'req_fake' } };
}

/** Anthropic counts input without cache reads; the AI SDK adds them back, so totals match the script. */
function usageFields(usage: FakeUsage | undefined): { input_tokens: number; cache_read_input_tokens: number; output_tokens: number } {
  const cached = usage?.cachedInputTokens ?? 0;
  return { input_tokens: (usage?.inputTokens ?? 0) - cached, cache_read_input_tokens: cached, output_tokens: usage?.outputTokens ?? 0 };
}

/** The AI SDK asks for structured output from older models through a forced tool named `json`. */
function wantsJsonTool(body: unknown): boolean {
  return isRecord(body) && Array.isArray(body.tools) && body.tools.some((t) => isRecord(t) && t.name === 'json');
}

type Block =
  | { type: 'text'; text: string }
  | { type: 'thinking'; thinking: string; signature: string }
  | { type: 'tool_use'; id: string; name: string; call: FakeToolCall };

/** Builds one message's events; it keeps the blocks so the non-streaming answer is the same message. */
class MessageBuilder implements StreamEncoder {
  private readonly id: string;
  private readonly blocks: Block[] = [];
  private open_: Block | undefined;
  private readonly jsonTool: boolean;

  constructor(private readonly ctx: ReplyContext) {
    this.id = ctx.newId('msg_');
    this.jsonTool = wantsJsonTool(ctx.request.body);
  }

  open(): string[] {
    const { input_tokens, cache_read_input_tokens } = usageFields(this.ctx.usage);
    return [
      sseEvent('message_start', {
        type: 'message_start',
        message: {
          id: this.id,
          type: 'message',
          role: 'assistant',
          model: this.ctx.model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens, cache_creation_input_tokens: 0, cache_read_input_tokens, output_tokens: 1, service_tier: 'standard' },
        },
      }),
      sseEvent('ping', { type: 'ping' }),
    ];
  }

  part(part: OutputPart): string[] {
    switch (part.kind) {
      case 'text':
        return this.textLike('text', part.text);
      case 'reasoning':
        return this.textLike('thinking', part.text);
      case 'json':
        return this.jsonTool ? this.toolUse({ name: 'json', arguments: isRecord(part.value) ? part.value : JSON.stringify(part.value) }) : this.textLike('text', JSON.stringify(part.value));
      case 'toolCall':
        return this.toolUse(part.call);
    }
  }

  error(error: FakeError): string[] {
    return [sseEvent('error', { type: 'error', error: anthropicError(error, this.ctx.model) })];
  }

  close(): string[] {
    const frames = this.closeBlock();
    const usage = usageFields(this.ctx.usage);
    const reasoning = this.ctx.usage?.reasoningTokens;
    frames.push(
      sseEvent('message_delta', {
        type: 'message_delta',
        delta: { stop_reason: this.stopReason(), stop_sequence: null },
        usage: {
          input_tokens: usage.input_tokens,
          cache_creation_input_tokens: 0,
          cache_read_input_tokens: usage.cache_read_input_tokens,
          output_tokens: usage.output_tokens,
          ...(reasoning !== undefined ? { output_tokens_details: { thinking_tokens: reasoning } } : {}),
        },
      }),
      sseEvent('message_stop', { type: 'message_stop' }),
    );
    return frames;
  }

  /** The whole message, as the non-streaming API returns it. */
  message(): Record<string, unknown> {
    const usage = usageFields(this.ctx.usage);
    const content = this.blocks.map((block) =>
      block.type === 'tool_use' ? { type: 'tool_use', id: block.id, name: block.name, input: argumentsObject(block.call, 'Anthropic') } : block,
    );
    return {
      id: this.id,
      type: 'message',
      role: 'assistant',
      model: this.ctx.model,
      content,
      stop_reason: this.stopReason(),
      stop_sequence: null,
      usage: { input_tokens: usage.input_tokens, cache_creation_input_tokens: 0, cache_read_input_tokens: usage.cache_read_input_tokens, output_tokens: usage.output_tokens },
    };
  }

  private stopReason(): string {
    switch (this.ctx.finishReason) {
      case 'length':
        return 'max_tokens';
      case 'content_filter':
        return 'refusal';
      case 'tool_calls':
        return 'tool_use';
      case 'stop':
        return 'end_turn';
      default:
        return this.blocks.some((b) => b.type === 'tool_use') ? 'tool_use' : 'end_turn';
    }
  }

  private textLike(type: 'text' | 'thinking', delta: string): string[] {
    const frames: string[] = [];
    let block = this.open_;
    if (block?.type !== type) {
      frames.push(...this.closeBlock());
      block = type === 'text' ? { type, text: '' } : { type, thinking: '', signature: THINKING_SIGNATURE };
      this.blocks.push(block);
      this.open_ = block;
      const start = type === 'text' ? { type, text: '' } : { type, thinking: '', signature: '' };
      frames.push(sseEvent('content_block_start', { type: 'content_block_start', index: this.blocks.length - 1, content_block: start }));
    }
    const index = this.blocks.length - 1;
    if (block.type === 'text') {
      block.text += delta;
      frames.push(sseEvent('content_block_delta', { type: 'content_block_delta', index, delta: { type: 'text_delta', text: delta } }));
    } else if (block.type === 'thinking') {
      block.thinking += delta;
      frames.push(sseEvent('content_block_delta', { type: 'content_block_delta', index, delta: { type: 'thinking_delta', thinking: delta } }));
    }
    return frames;
  }

  private toolUse(call: FakeToolCall): string[] {
    const frames = this.closeBlock();
    const block: Block = { type: 'tool_use', id: call.id ?? this.ctx.newId('toolu_'), name: call.name, call };
    this.blocks.push(block);
    const index = this.blocks.length - 1;
    frames.push(
      sseEvent('content_block_start', { type: 'content_block_start', index, content_block: { type: 'tool_use', id: block.id, name: block.name, input: {} } }),
      sseEvent('content_block_delta', { type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: '' } }),
      ...fragments(argumentsText(call)).map((partial_json) =>
        sseEvent('content_block_delta', { type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json } }),
      ),
      sseEvent('content_block_stop', { type: 'content_block_stop', index }),
    );
    return frames;
  }

  private closeBlock(): string[] {
    const block = this.open_;
    if (block === undefined) return [];
    this.open_ = undefined;
    const index = this.blocks.indexOf(block);
    const frames: string[] = [];
    if (block.type === 'thinking') {
      frames.push(sseEvent('content_block_delta', { type: 'content_block_delta', index, delta: { type: 'signature_delta', signature: block.signature } }));
    }
    frames.push(sseEvent('content_block_stop', { type: 'content_block_stop', index }));
    return frames;
  }
}

function messageText(message: Record<string, unknown>): string | undefined {
  return contentText(message.content, ['text']);
}

export const anthropicDialect: Dialect = {
  protocol: 'anthropic',

  describe(body) {
    const b = isRecord(body) ? body : {};
    return {
      model: typeof b.model === 'string' ? b.model : undefined,
      stream: b.stream === true,
      lastUserText: lastUserText(b.messages, (m) => m.role, messageText),
      systemText: contentText(b.system, ['text']),
    };
  },

  errorAnswer: anthropicErrorAnswer,

  openStream: (ctx) => new MessageBuilder(ctx),

  completeBody(parts, ctx) {
    const builder = new MessageBuilder(ctx);
    for (const part of mergeTextParts(parts)) builder.part(part);
    return builder.message();
  },
};
