/**
 * Usage read from model answers passing through the gateway (sandbox.md §11): Anthropic
 * `message_start`/`message_delta`, OpenAI chat `usage`, OpenAI Responses `response.usage`, in JSON
 * bodies and in server-sent events alike.
 */

export interface TokenUsage { inputTokens: number; outputTokens: number; reasoningTokens: number; cachedInputTokens: number }

type Obj = Record<string, unknown>;
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const obj = (v: unknown): Obj | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Obj : undefined);

/** Collects usage from every JSON object of one answer; counters keep their largest value (they are cumulative). */
export class UsageReader {
  private seen = false;
  private readonly u: TokenUsage = { inputTokens: 0, outputTokens: 0, reasoningTokens: 0, cachedInputTokens: 0 };
  private sse = '';
  private json: Buffer[] = [];
  private jsonBytes = 0;

  constructor(private readonly streaming: boolean) {}

  write(chunk: Buffer): void {
    if (this.streaming) {
      this.sse += chunk.toString('utf8');
      let nl: number;
      while ((nl = this.sse.indexOf('\n')) >= 0) {
        const line = this.sse.slice(0, nl).replace(/\r$/, '');
        this.sse = this.sse.slice(nl + 1);
        if (line.startsWith('data:')) this.take(line.slice(5).trim());
      }
    } else if (this.jsonBytes < 16 * 1024 * 1024) {
      this.json.push(chunk);
      this.jsonBytes += chunk.length;
    }
  }

  /** The usage found, or undefined when the answer reported none. */
  end(): TokenUsage | undefined {
    if (this.streaming) { if (this.sse.startsWith('data:')) this.take(this.sse.slice(5).trim()); }
    else this.take(Buffer.concat(this.json).toString('utf8'));
    return this.seen ? { ...this.u } : undefined;
  }

  private take(text: string): void {
    if (!text || text === '[DONE]') return;
    let v: unknown;
    try { v = JSON.parse(text); } catch { return; }
    const o = obj(v);
    if (!o) return;
    for (const usage of [o.usage, obj(o.message)?.usage, obj(o.response)?.usage].map(obj)) if (usage) this.add(usage);
  }

  private add(u: Obj): void {
    const max = (k: keyof TokenUsage, v: number | undefined) => { if (v !== undefined) { this.seen = true; this.u[k] = Math.max(this.u[k], v); } };
    max('inputTokens', num(u.input_tokens) ?? num(u.prompt_tokens));
    max('outputTokens', num(u.output_tokens) ?? num(u.completion_tokens));
    max('reasoningTokens', num(obj(u.output_tokens_details)?.reasoning_tokens) ?? num(obj(u.completion_tokens_details)?.reasoning_tokens));
    max('cachedInputTokens', num(u.cache_read_input_tokens) ?? num(obj(u.input_tokens_details)?.cached_tokens) ?? num(obj(u.prompt_tokens_details)?.cached_tokens));
  }
}
