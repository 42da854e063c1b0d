import { convert } from 'html-to-text';
import { z } from 'zod';
import { AddressRefusedError, addressPolicy, type AddressPolicy, type HostResolver } from '../network/address-policy.js';
import { abortError, pinnedRequest, type PinnedResponse } from '../network/pinned-http.js';
import { cutChars } from '../prompt/text-forms.js';
import { ToolError, type RuntimeTool } from './tool.js';

/** Settings of `web_fetch` (runtime.md §6.2, §16). */
export interface WebFetchOptions {
  /** `WEGENT_PRIVATE_HOSTS_ALLOW`. */
  privateHostsAllow?: readonly string[];
  /** `WEGENT_FETCH_DENY_HOSTS`. */
  denyHosts?: readonly string[];
  /** `WEGENT_FETCH_MAX_BYTES` (2 MiB). */
  maxBytes?: number;
  /** Whole-fetch limit, redirects included (15 s). */
  timeoutMs?: number;
  /** Product version for the User-Agent. */
  version?: string;
  /** Host resolver (tests inject one). */
  resolver?: HostResolver;
}

export const WEB_FETCH_DEFAULT_MAX_BYTES = 2 * 1024 * 1024;
const MAX_REDIRECTS = 5;
const DEFAULT_TIMEOUT_MS = 15_000;

export const WebFetchInput = z.object({
  url: z.string().max(2048).describe('The http or https URL to fetch'),
  maxChars: z.number().int().min(1).max(100_000).optional().describe('Most characters of content to return (default 20000)'),
});
export type WebFetchInput = z.infer<typeof WebFetchInput>;

export interface WebFetchResult {
  url: string;
  status: number;
  contentType: string;
  title?: string;
  content: string;
  truncated: boolean;
}

const REFUSED = 'this address is not allowed (private or local network)';

/** Fetches a web page for the model, refusing private and local addresses at every hop. */
export async function webFetch(input: WebFetchInput, signal: AbortSignal, options: WebFetchOptions = {}): Promise<WebFetchResult> {
  const policy = addressPolicy({ allowNonPublic: false, privateHostsAllow: options.privateHostsAllow, denyHosts: options.denyHosts });
  const maxBytes = options.maxBytes ?? WEB_FETCH_DEFAULT_MAX_BYTES;
  const maxChars = input.maxChars ?? 20_000;
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const combined = AbortSignal.any([signal, timeout.signal]);
  try {
    let url = parseFetchUrl(input.url);
    for (let hop = 0; ; hop++) {
      const res = await request(url, policy, combined, options);
      const location = res.headers.location;
      if (res.status >= 300 && res.status < 400 && res.status !== 304 && location) {
        res.destroy();
        if (hop >= MAX_REDIRECTS) throw new ToolError(`too many redirects (more than ${MAX_REDIRECTS})`);
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          throw new ToolError(`invalid redirect location '${cutChars(location, 200)}'`);
        }
        if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new ToolError(`redirect to a non-HTTP URL refused (${next.protocol})`);
        if (next.username || next.password) throw new ToolError('redirect to a URL with user info refused');
        url = next;
        continue;
      }
      return await readPage(url, res, maxBytes, maxChars, combined);
    }
  } catch (err) {
    if (err instanceof ToolError) throw err;
    if (err instanceof AddressRefusedError) throw new ToolError(err.reason === 'scheme' || err.reason === 'userinfo' ? err.message : REFUSED);
    if (timeout.signal.aborted && !signal.aborted) throw new ToolError(`timed out after ${Math.round((options.timeoutMs ?? DEFAULT_TIMEOUT_MS) / 1000)} s`);
    if (signal.aborted) throw abortError();
    const code = (err as { code?: string }).code;
    throw new ToolError(`fetch failed: ${code ? `${code} ` : ''}${err instanceof Error ? err.message : String(err)}`.trim());
  } finally {
    clearTimeout(timer);
  }
}

function parseFetchUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ToolError(`invalid URL '${cutChars(text, 200)}'`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ToolError('only http and https URLs can be fetched');
  if (url.username || url.password) throw new ToolError('URLs with a user name or password are not allowed');
  url.hash = '';
  return url;
}

function request(url: URL, policy: AddressPolicy, signal: AbortSignal, options: WebFetchOptions): Promise<PinnedResponse> {
  return pinnedRequest({
    url,
    method: 'GET',
    headers: {
      'user-agent': `Wegent/${options.version ?? '0.1.0'} (+web_fetch)`,
      accept: 'text/html,application/xhtml+xml,application/json,text/plain;q=0.9,*/*;q=0.8',
      'accept-encoding': 'gzip, deflate, br',
    },
    policy,
    resolver: options.resolver,
    signal,
  });
}

/** Reads at most `maxBytes` of the body; the rest is never downloaded. */
async function readBody(res: PinnedResponse, maxBytes: number, signal: AbortSignal): Promise<{ bytes: Buffer; truncated: boolean }> {
  const chunks: Buffer[] = [];
  let total = 0;
  let truncated = false;
  try {
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      if (signal.aborted) throw abortError();
      const room = maxBytes - total;
      if (chunk.length >= room) {
        chunks.push(chunk.subarray(0, room));
        total += room;
        truncated = chunk.length > room || !res.body.readableEnded;
        break;
      }
      chunks.push(chunk);
      total += chunk.length;
    }
  } finally {
    res.destroy();
  }
  if (signal.aborted) throw abortError();
  return { bytes: Buffer.concat(chunks, total), truncated };
}

async function readPage(url: URL, res: PinnedResponse, maxBytes: number, maxChars: number, signal: AbortSignal): Promise<WebFetchResult> {
  const contentTypeHeader = String(res.headers['content-type'] ?? '');
  const mediaType = contentTypeHeader.split(';')[0]!.trim().toLowerCase();
  const isHtml = mediaType === 'text/html' || mediaType === 'application/xhtml+xml';
  const isText =
    isHtml || mediaType.startsWith('text/') || mediaType === 'application/json' || mediaType.endsWith('+json') || mediaType === 'application/xml' || mediaType.endsWith('+xml') || mediaType === '';
  if (!isText) {
    const length = Number(res.headers['content-length']);
    let size = Number.isFinite(length) && length >= 0 ? length : undefined;
    if (size === undefined) size = (await readBody(res, maxBytes, signal)).bytes.length;
    else res.destroy();
    throw new ToolError(`unsupported content type ${mediaType} (${size} bytes)`);
  }
  const { bytes, truncated: bytesTruncated } = await readBody(res, maxBytes, signal);
  const text = decode(bytes, charsetOf(contentTypeHeader));
  let content = text;
  let title: string | undefined;
  if (isHtml) {
    title = extractTitle(text);
    content = htmlToReadableText(text, url);
  }
  const cut = cutChars(content, maxChars);
  return {
    url: url.href,
    status: res.status,
    contentType: contentTypeHeader || mediaType,
    ...(title ? { title } : {}),
    content: cut,
    truncated: bytesTruncated || cut.length < content.length,
  };
}

function charsetOf(contentType: string): string {
  const match = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType);
  return match ? match[1]!.toLowerCase() : 'utf-8';
}

function decode(bytes: Buffer, charset: string): string {
  try {
    return new TextDecoder(charset).decode(bytes);
  } catch {
    return new TextDecoder('utf-8').decode(bytes);
  }
}

function extractTitle(html: string): string | undefined {
  const match = /<title[^>]*>([\s\S]*?)<\/title\s*>/i.exec(html);
  if (!match) return undefined;
  const title = convert(match[1]!, { wordwrap: false }).replace(/\s+/g, ' ').trim();
  return title === '' ? undefined : title;
}

const SKIPPED = ['script', 'style', 'noscript', 'nav', 'svg', 'iframe', 'template', 'img', 'head', 'form', 'button'];

/** HTML → readable text with headings, lists and links kept (scripts, styles, navigation removed). */
export function htmlToReadableText(html: string, baseUrl?: URL): string {
  return convert(html, {
    wordwrap: false,
    baseElements: { selectors: ['body'], returnDomByDefault: true },
    selectors: [
      ...SKIPPED.map((selector) => ({ selector, format: 'skip' })),
      ...['h1', 'h2', 'h3', 'h4', 'h5', 'h6'].map((selector) => ({ selector, options: { uppercase: false } })),
      { selector: 'a', options: { baseUrl: baseUrl?.origin, hideLinkHrefIfSameAsText: true, noAnchorUrl: true } },
      { selector: 'table', format: 'dataTable', options: { uppercaseHeaderCells: false } },
    ],
  }).trim();
}

/** The `web_fetch` tool (runtime.md §6.2). */
export function webFetchTool(options: WebFetchOptions = {}): RuntimeTool<WebFetchInput> {
  return {
    name: 'web_fetch',
    description:
      'Fetch a public web page or document by URL and return its readable text (HTML is converted to text). Only http and https URLs on the public internet.',
    source: 'builtin',
    inputSchema: WebFetchInput,
    timeoutMs: (options.timeoutMs ?? DEFAULT_TIMEOUT_MS) + 5_000,
    execute: (input, context) => webFetch(input, context.signal, options),
  };
}
