import { describe, expect, it } from 'vitest';
import { mcpResultText } from './call-result.js';
import { offeredSchema, unreachableReason } from './mcp-servers.js';
import { mcpToolName } from './tool-names.js';

describe('MCP tool names', () => {
  it('prefixes mcp__<server>__ and replaces characters outside [A-Za-z0-9_-]', () => {
    expect(mcpToolName('github', 'create_issue', new Set())).toBe('mcp__github__create_issue');
    expect(mcpToolName('my.server', 'files/read v2', new Set())).toBe('mcp__my_server__files_read_v2');
  });

  it('shortens names over 64 characters with a short hash that tells them apart', () => {
    const a = mcpToolName('server', `${'x'.repeat(70)}a`, new Set());
    const b = mcpToolName('server', `${'x'.repeat(70)}b`, new Set());
    expect(a).toHaveLength(64);
    expect(b).toHaveLength(64);
    expect(a).toMatch(/^mcp__server__x+_[0-9a-f]{8}$/);
    expect(a).not.toBe(b);
  });

  it('gives a clashing name a numeric suffix', () => {
    const taken = new Set(['mcp__a_b__c']);
    expect(mcpToolName('a.b', 'c', taken)).toBe('mcp__a_b__c_2');
    taken.add('mcp__a_b__c_2');
    expect(mcpToolName('a.b', 'c', taken)).toBe('mcp__a_b__c_3');
  });
});

describe('MCP results as tool output', () => {
  it('joins content items with newlines, naming images and audio and using resource URIs or texts', () => {
    expect(
      mcpResultText({
        content: [
          { type: 'text', text: 'a' },
          { type: 'image', data: '', mimeType: 'image/png' },
          { type: 'audio', data: '', mimeType: 'audio/wav' },
          { type: 'resource_link', uri: 'https://x/y', name: 'y' },
          { type: 'resource', resource: { uri: 'file:///t', text: 'inline' } },
          { type: 'resource', resource: { uri: 'file:///blob', blob: 'AAAA' } },
        ],
      }),
    ).toBe('a\n[image omitted]\n[audio omitted]\nhttps://x/y\ninline\nfile:///blob');
  });

  it('uses structuredContent only when content is empty, else empty text', () => {
    expect(mcpResultText({ content: [], structuredContent: { n: 1 } })).toBe('{"n":1}');
    expect(mcpResultText({ content: [{ type: 'text', text: 'shown' }], structuredContent: { n: 1 } })).toBe('shown');
    expect(mcpResultText({ content: [] })).toBe('');
  });
});

describe('MCP schemas and reasons', () => {
  it('passes an object schema as it is and wraps anything else as an object schema', () => {
    const schema = { $schema: 'https://json-schema.org/draft/2020-12/schema', type: 'object', properties: { q: { type: 'string' } }, required: ['q'], additionalProperties: false };
    expect(offeredSchema(schema)).toEqual({ type: 'object', properties: { q: { type: 'string' } }, required: ['q'], additionalProperties: false });
    expect(offeredSchema({ type: 'object' })).toEqual({ type: 'object', properties: {} });
    expect(offeredSchema(undefined)).toEqual({ type: 'object', properties: {} });
    expect(offeredSchema({ type: 'string' })).toEqual({ type: 'object', properties: {} });
  });

  it('keeps the first line of an error, at most 200 characters, with secrets removed', () => {
    const secret = 'tok_0123456789';
    expect(unreachableReason(new Error(`bad token ${secret} given\nstack line`), [secret])).toBe('bad token ****** given');
    expect(unreachableReason(new Error('y'.repeat(300)), [])).toHaveLength(200);
    expect(unreachableReason(new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED 10.0.0.1:80') }), [])).toBe('connect ECONNREFUSED 10.0.0.1:80');
  });
});
