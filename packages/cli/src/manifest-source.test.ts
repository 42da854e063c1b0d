import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { UsageError } from './errors.js';
import { readManifests } from './manifest-source.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
const tmp = () => {
  const d = mkdtempSync(path.join(tmpdir(), 'wegent-manifests-'));
  dirs.push(d);
  return d;
};
const noStdin = () => Readable.from([]);
const names = (yaml: string) => parseAllDocuments(yaml).map((d) => (d.toJS() as { metadata: { name: string } }).metadata.name);

describe('readManifests', () => {
  it('joins a folder’s yaml, yml and json files in name order, skipping other files and subfolders', async () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'b.yaml'), 'kind: Ghost\nmetadata: {name: b}\n---\nkind: Ghost\nmetadata: {name: b2}'); // no final newline
    writeFileSync(path.join(dir, 'a.json'), JSON.stringify([{ kind: 'Ghost', metadata: { name: 'a1' } }, { kind: 'Ghost', metadata: { name: 'a2' } }]));
    writeFileSync(path.join(dir, 'c.YML'), 'kind: Ghost\nmetadata: {name: c}\n');
    writeFileSync(path.join(dir, 'd.json'), JSON.stringify({ kind: 'List', items: [{ kind: 'Ghost', metadata: { name: 'd' } }] }));
    writeFileSync(path.join(dir, 'readme.md'), '# not a manifest');
    mkdirSync(path.join(dir, 'sub.yaml'));
    writeFileSync(path.join(dir, 'sub.yaml', 'x.yaml'), 'kind: Ghost\nmetadata: {name: x}\n');
    expect(names(await readManifests([dir], noStdin()))).toEqual(['a1', 'a2', 'b', 'b2', 'c', 'd']);
  });

  it('reads stdin for "-", converting JSON to YAML documents', async () => {
    const body = await readManifests(['-'], Readable.from([Buffer.from('{"kind":"Ghost","metadata":{"name":"from-json"}}')]));
    expect(names(body)).toEqual(['from-json']);
    const flowYaml = await readManifests(['-'], Readable.from([Buffer.from('{kind: Ghost, metadata: {name: flow}}\n')]));
    expect(names(flowYaml)).toEqual(['flow']);
  });

  it('refuses missing paths, empty folders and bad JSON as usage errors', async () => {
    const dir = tmp();
    await expect(readManifests([path.join(dir, 'nope.yaml')], noStdin())).rejects.toBeInstanceOf(UsageError);
    await expect(readManifests([dir], noStdin())).rejects.toThrow(/no \*\.yaml/);
    writeFileSync(path.join(dir, 'bad.json'), '{');
    await expect(readManifests([path.join(dir, 'bad.json')], noStdin())).rejects.toThrow(/invalid JSON/);
    await expect(readManifests([], noStdin())).rejects.toBeInstanceOf(UsageError);
  });
});
