import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { HostResolver } from '../network/address-policy.js';
import { ToolError } from './tool.js';
import { webFetch, webFetchTool } from './web-fetch.js';

let server: http.Server;
let base: string;
let port: number;
let seen: string[] = [];
let bigStreamClosedEarly = false;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    seen.push(req.url ?? '');
    const url = new URL(req.url ?? '/', 'http://x');
    switch (url.pathname) {
      case '/page':
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end(
          '<html><head><title>A &amp; B</title><style>.x{}</style><script>alert(1)</script></head><body>' +
            '<nav><a href="/home">Home</a></nav><h1>Heading</h1><p>Hello <a href="https://example.org/doc">docs</a>.</p>' +
            '<ul><li>one</li><li>two</li></ul></body></html>',
        );
        return;
      case '/json':
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end('{"error":"nope"}');
        return;
      case '/latin1':
        res.writeHead(200, { 'content-type': 'text/plain; charset=iso-8859-1' });
        res.end(Buffer.from([0x63, 0x61, 0x66, 0xe9]));
        return;
      case '/binary':
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '4' });
        res.end(Buffer.from([1, 2, 3, 4]));
        return;
      case '/big': {
        res.writeHead(200, { 'content-type': 'text/plain' });
        const chunk = 'x'.repeat(64 * 1024);
        let sent = 0;
        res.on('close', () => {
          if (!res.writableFinished) bigStreamClosedEarly = true;
        });
        const pump = () => {
          while (sent < 8 * 1024 * 1024) {
            sent += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
        return;
      }
      case '/redirect':
        res.writeHead(302, { location: url.searchParams.get('to') ?? '/page' });
        res.end();
        return;
      case '/loop':
        res.writeHead(302, { location: '/loop' });
        res.end();
        return;
      case '/hang':
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('partial');
        return; // never ends
      case '/secret':
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('the secret');
        return;
      default:
        res.writeHead(404);
        res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => {
  seen = [];
  bigStreamClosedEarly = false;
});

const signal = () => new AbortController().signal;
const allowLoopback = { privateHostsAllow: ['127.0.0.1'] };
const refusal = new ToolError('this address is not allowed (private or local network)');

describe('web_fetch address protection', () => {
  it('refuses a server on 127.0.0.1 by default and never connects to it', async () => {
    await expect(webFetch({ url: `${base}/page` }, signal())).rejects.toEqual(refusal);
    await expect(webFetch({ url: `http://0x7f.1:${port}/page` }, signal())).rejects.toEqual(refusal);
    await expect(webFetch({ url: `http://2130706433:${port}/page` }, signal())).rejects.toEqual(refusal);
    await expect(webFetch({ url: `http://[::ffff:127.0.0.1]:${port}/page` }, signal())).rejects.toEqual(refusal);
    await expect(webFetch({ url: `http://localhost:${port}/page` }, signal())).rejects.toEqual(refusal);
    expect(seen).toEqual([]);
  });

  it('refuses cloud metadata, private and link-local addresses', async () => {
    for (const url of ['http://169.254.169.254/latest/meta-data/', 'http://10.0.0.1/', 'http://[fe80::1]/', 'http://100.64.1.1/', 'http://metadata.google.internal/']) {
      await expect(webFetch({ url }, signal()), url).rejects.toEqual(refusal);
    }
  });

  it('reaches the local server when 127.0.0.1 is allow-listed, converting HTML to readable text', async () => {
    const page = await webFetch({ url: `${base}/page` }, signal(), allowLoopback);
    expect(page).toMatchObject({ url: `${base}/page`, status: 200, contentType: 'text/html; charset=utf-8', title: 'A & B', truncated: false });
    expect(page.content).toContain('Heading');
    expect(page.content).toContain('Hello docs [https://example.org/doc].');
    expect(page.content).toMatch(/\* one\n \* two/);
    expect(page.content).not.toContain('alert');
    expect(page.content).not.toContain('.x{}');
    expect(page.content).not.toContain('Home');
  });

  it('refuses a redirect into a private address and never follows it', async () => {
    for (const to of [`http://localhost:${port}/secret`, `http://127.0.0.2:${port}/secret`, 'http://169.254.169.254/', 'http://192.168.0.1/']) {
      await expect(webFetch({ url: `${base}/redirect?to=${encodeURIComponent(to)}` }, signal(), allowLoopback), to).rejects.toEqual(refusal);
    }
    expect(seen.filter((s) => s.startsWith('/secret'))).toEqual([]);
  });

  it('follows allowed redirects and reports the final URL', async () => {
    const page = await webFetch({ url: `${base}/redirect?to=/page` }, signal(), allowLoopback);
    expect(page.url).toBe(`${base}/page`);
    expect(page.status).toBe(200);
  });

  it('stops after five redirects and refuses non-HTTP redirect targets', async () => {
    await expect(webFetch({ url: `${base}/loop` }, signal(), allowLoopback)).rejects.toEqual(new ToolError('too many redirects (more than 5)'));
    expect(seen).toHaveLength(6);
    await expect(webFetch({ url: `${base}/redirect?to=${encodeURIComponent('file:///etc/passwd')}` }, signal(), allowLoopback)).rejects.toThrow(/non-HTTP/);
  });

  it('refuses non-HTTP URLs and URLs with user info', async () => {
    await expect(webFetch({ url: 'file:///etc/passwd' }, signal())).rejects.toThrow('only http and https URLs can be fetched');
    await expect(webFetch({ url: 'ftp://example.com/' }, signal())).rejects.toThrow('only http and https URLs can be fetched');
    await expect(webFetch({ url: 'http://user:pw@example.com/' }, signal())).rejects.toThrow('URLs with a user name or password are not allowed');
  });

  it('connects to the address it checked, not to a second DNS answer', async () => {
    // `pinned.test` exists only in the injected resolver: the connection can only succeed if the socket's lookup is pinned to it.
    let lookups = 0;
    const resolver: HostResolver = async () => {
      lookups++;
      return [{ address: '127.0.0.1', family: 4 }];
    };
    const page = await webFetch({ url: `http://pinned.test:${port}/secret` }, signal(), { privateHostsAllow: ['pinned.test'], resolver });
    expect(page.content).toBe('the secret');
    expect(lookups).toBe(1);
  });
});

describe('web_fetch content and limits', () => {
  it('returns an HTTP error page rather than failing, JSON as text', async () => {
    await expect(webFetch({ url: `${base}/json` }, signal(), allowLoopback)).resolves.toMatchObject({ status: 404, content: '{"error":"nope"}', truncated: false });
  });

  it('decodes the charset of the Content-Type header', async () => {
    await expect(webFetch({ url: `${base}/latin1` }, signal(), allowLoopback)).resolves.toMatchObject({ content: 'café' });
  });

  it('refuses binary content types with their size', async () => {
    await expect(webFetch({ url: `${base}/binary` }, signal(), allowLoopback)).rejects.toEqual(new ToolError('unsupported content type application/octet-stream (4 bytes)'));
  });

  it('reads at most the byte cap and leaves the rest undownloaded', async () => {
    const page = await webFetch({ url: `${base}/big`, maxChars: 100_000 }, signal(), { ...allowLoopback, maxBytes: 1024 * 1024 });
    expect(page.truncated).toBe(true);
    expect(page.content).toHaveLength(100_000);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(bigStreamClosedEarly).toBe(true);
  });

  it('cuts content to maxChars and says so', async () => {
    const page = await webFetch({ url: `${base}/secret`, maxChars: 3 }, signal(), allowLoopback);
    expect(page).toMatchObject({ content: 'the', truncated: true });
  });

  it('gives up after its time limit', async () => {
    await expect(webFetch({ url: `${base}/hang` }, signal(), { ...allowLoopback, timeoutMs: 1000 })).rejects.toEqual(new ToolError('timed out after 1 s'));
  });

  it('is aborted by the signal at once', async () => {
    const controller = new AbortController();
    const started = Date.now();
    const pending = webFetch({ url: `${base}/hang` }, controller.signal, allowLoopback);
    setTimeout(() => controller.abort(), 100);
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('validates its input as a tool with the §6.2 limits', () => {
    const tool = webFetchTool();
    expect(tool.inputSchema.safeParse({ url: 'https://example.com', maxChars: 100_001 }).success).toBe(false);
    expect(tool.inputSchema.safeParse({ url: 'x'.repeat(2049) }).success).toBe(false);
  });
});
