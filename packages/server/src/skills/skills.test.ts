import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeModelServer, type FakeModelServer } from '@wegent/runtime/testing';
import { startTestServer, type TestServer } from '../testing/server.js';
import { createTestDatabase, type TestDatabase } from '../testing/databases.js';
import { fakeTeamManifest } from '../testing/fake-team.js';
import { until } from '../testing/wait.js';
import { zip, type ZipEntry } from '../testing/zip.js';
import { SkillService } from './service.js';

const SKILL_MD = `---
name: pdf-tools
description: Work with PDF files (split, merge, fill forms).
version: 1.0
author: Docs Team
tags: [pdf, documents]
bindShells: [chat, Code]
license: MIT
---

# PDF tools

Run \`scripts/split.sh <file>\` to split a PDF.
`;
const BODY = '# PDF tools\n\nRun `scripts/split.sh <file>` to split a PDF.\n';
const SPLIT_SH = '#!/bin/sh\nqpdf --split-pages "$1" out.pdf\n';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let srv: TestServer;
let alice: { id: string; token: string };
let bob: { id: string; token: string };

/** PUT a package: raw application/zip by default, or multipart with the archive in `file`. */
async function upload(name: string, body: Buffer, opts: { token?: string; type?: string; multipart?: boolean; query?: string; headers?: Record<string, string>; ns?: string } = {}) {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  let payload: FormData | Buffer;
  if (opts.multipart) {
    const form = new FormData();
    form.append('note', 'ignored');
    form.append('file', new Blob([body], { type: 'application/zip' }), `${name}.zip`);
    payload = form;
  } else {
    headers['content-type'] = opts.type ?? 'application/zip';
    payload = body;
  }
  const res = await fetch(`${srv.url}/api/v1/namespaces/${opts.ns ?? 'default'}/skills/${name}/package${opts.query ?? ''}`, { method: 'PUT', headers, body: payload });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

async function download(name: string, token: string, query = '') {
  const res = await fetch(`${srv.url}/api/v1/namespaces/default/skills/${name}/package${query}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
}

beforeAll(async () => {
  srv = await startTestServer();
  alice = await srv.createUser('alice');
  bob = await srv.createUser('bob');
}, 60_000);
afterAll(async () => {
  await srv?.stop();
});

describe('uploading a skill package (api.md §4.12)', () => {
  const archive = zip([
    { name: 'SKILL.md', data: SKILL_MD },
    { name: 'scripts/', mode: 0o40755 },
    { name: 'scripts/split.sh', data: SPLIT_SH, mode: 0o100755 },
    { name: 'README.md', data: 'About pdf-tools.', method: 0 },
  ]);

  it('creates the Skill from SKILL.md with the package facts in its status, 201', async () => {
    const res = await upload('pdf-tools', archive, { token: alice.token });
    expect(res.status).toBe(201);
    expect(res.headers.get('etag')).toBe(`"${sha256(archive)}"`);
    expect(res.body).toMatchObject({ apiVersion: 'agent.wecode.io/v1', kind: 'Skill', metadata: { name: 'pdf-tools', namespace: 'default', generation: 1 } });
    expect(res.body.spec).toEqual({
      description: 'Work with PDF files (split, merge, fill forms).',
      version: '1.0',
      author: 'Docs Team',
      tags: ['pdf', 'documents'],
      bindShells: ['Chat', 'Code'],
      license: 'MIT',
      prompt: BODY,
    });
    expect(res.body.status).toMatchObject({ state: 'Available', package: true, fileSize: archive.length, fileHash: `sha256:${sha256(archive)}`, fileCount: 3 });
  });

  it('reads the Skill back and lists it through the resource API', async () => {
    const got = await srv.request('GET', '/api/v1/namespaces/default/skills/pdf-tools', { token: alice.token });
    expect(got.status).toBe(200);
    expect(got.body.spec.prompt).toBe(BODY);
    const list = await srv.request('GET', '/api/v1/namespaces/default/skills', { token: alice.token });
    expect(list.body.items.map((i: { metadata: { name: string } }) => i.metadata.name)).toContain('pdf-tools');
  });

  it('downloads the original bytes with the same sha256 as ETag', async () => {
    const res = await download('pdf-tools', alice.token);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/zip');
    expect(res.headers.get('content-disposition')).toBe('attachment; filename="pdf-tools.zip"');
    expect(res.headers.get('etag')).toBe(`"${sha256(archive)}"`);
    expect(res.bytes.equals(archive)).toBe(true);
  });

  it('lists the package files relative to the root, sorted, without folders', async () => {
    const res = await srv.request('GET', '/api/v1/namespaces/default/skills/pdf-tools/files', { token: alice.token });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ items: [{ path: 'README.md', size: 16 }, { path: 'SKILL.md', size: Buffer.byteLength(SKILL_MD) }, { path: 'scripts/split.sh', size: SPLIT_SH.length }] });
  });

  it('gives the run host the package files with their bytes, relative to the root', async () => {
    const skill = await srv.ctx.resources.findVisible({ userId: alice.id, isAdmin: false }, 'Skill', 'default', 'pdf-tools');
    const files = await new SkillService(srv.ctx.resources).packageFiles(skill!.uid);
    expect(files.map((f) => [f.path, f.data.toString()])).toEqual([
      ['README.md', 'About pdf-tools.'],
      ['SKILL.md', SKILL_MD],
      ['scripts/split.sh', SPLIT_SH],
    ]);
  });

  it('checks a package with ?dryRun=true and stores nothing', async () => {
    const res = await upload('dry-skill', archive, { token: alice.token, query: '?dryRun=true' });
    expect(res.status).toBe(201);
    expect(res.body.spec.prompt).toBe(BODY);
    expect((await srv.request('GET', '/api/v1/namespaces/default/skills/dry-skill', { token: alice.token })).status).toBe(404);
    expect((await upload('dry-skill', zip([{ name: 'x.txt', data: 'x' }]), { token: alice.token, query: '?dryRun=true' })).status).toBe(422);
  });

  it('answers an identical re-upload with 200 and changes nothing', async () => {
    const before = await srv.request('GET', '/api/v1/namespaces/default/skills/pdf-tools', { token: alice.token });
    const res = await upload('pdf-tools', archive, { token: alice.token });
    expect(res.status).toBe(200);
    expect(res.body.metadata).toMatchObject({ resourceVersion: before.body.metadata.resourceVersion, generation: 1 });
  });

  it('replaces the package from a multipart form, SKILL.md in one top-level folder: 200, generation + 1', async () => {
    const nextMd = '---\ndescription: PDF work, version two.\n---\nSplit with qpdf.\n';
    const next = zip([
      { name: 'pdf-tools-2/', mode: 0o40755 },
      { name: 'pdf-tools-2/SKILL.md', data: nextMd },
      { name: 'pdf-tools-2/bin/merge.py', data: 'print("merge")\n' },
    ]);
    const res = await upload('pdf-tools', next, { token: alice.token, multipart: true });
    expect(res.status).toBe(200);
    expect(res.headers.get('warning')).toContain('bindShells not set; defaulting to Chat, Code, ClaudeCode');
    expect(res.body.metadata.generation).toBe(2);
    expect(res.body.spec).toEqual({ description: 'PDF work, version two.', prompt: 'Split with qpdf.\n' });
    expect(res.body.status).toMatchObject({ package: true, fileHash: `sha256:${sha256(next)}`, fileCount: 2, fileSize: next.length });
    const files = await srv.request('GET', '/api/v1/namespaces/default/skills/pdf-tools/files', { token: alice.token });
    expect(files.body.items).toEqual([{ path: 'SKILL.md', size: nextMd.length }, { path: 'bin/merge.py', size: 15 }]);
    expect((await download('pdf-tools', alice.token)).bytes.equals(next)).toBe(true);
  });

  it('refuses a replacement whose If-Match is not the current ETag, 409, and accepts the current one', async () => {
    const current = await download('pdf-tools', alice.token);
    const stale = await upload('pdf-tools', archive, { token: alice.token, headers: { 'if-match': `"${sha256(archive)}"` } });
    expect(stale.status).toBe(409);
    expect(stale.body).toMatchObject({ kind: 'Status', reason: 'Conflict', code: 409 });
    expect((await download('pdf-tools', alice.token)).bytes.equals(current.bytes)).toBe(true);
    const ok = await upload('pdf-tools', archive, { token: alice.token, headers: { 'if-match': current.headers.get('etag')! } });
    expect(ok.status).toBe(200);
    expect(ok.body.metadata.generation).toBe(3);
  });

  it('keeps the package facts when the Skill document is written through the resource API', async () => {
    const patched = await srv.request('PATCH', '/api/v1/namespaces/default/skills/pdf-tools', { token: alice.token, body: { spec: { description: 'Edited by hand.' } }, headers: { 'content-type': 'application/merge-patch+json' } });
    expect(patched.status).toBe(200);
    expect(patched.body.status).toMatchObject({ package: true, fileHash: `sha256:${sha256(archive)}`, fileCount: 3 });
  });

  it("hides another user's package (404) and refuses anonymous uploads (401)", async () => {
    expect((await download('pdf-tools', bob.token)).status).toBe(404);
    expect((await srv.request('GET', '/api/v1/namespaces/default/skills/pdf-tools/files', { token: bob.token })).status).toBe(404);
    const anon = await upload('pdf-tools', archive, {});
    expect(anon.status).toBe(401);
  });

  it('lets only admins upload public packages, which every user can then download', async () => {
    const pub = zip([{ name: 'SKILL.md', data: '---\ndescription: Shared.\nbindShells: [Chat]\n---\nShared body.\n' }]);
    expect((await upload('shared-skill', pub, { token: bob.token, query: '?scope=public' })).status).toBe(403);
    const res = await upload('shared-skill', pub, { token: srv.adminToken, query: '?scope=public' });
    expect(res.status).toBe(201);
    const got = await download('shared-skill', bob.token);
    expect(got.status).toBe(200);
    expect(got.bytes.equals(pub)).toBe(true);
    expect((await download('shared-skill', bob.token, '?scope=own')).status).toBe(404);
  });

  it('refuses to delete a Skill that a Ghost lists, then deletes it with its package', async () => {
    const ghost = await srv.request('POST', '/api/v1/namespaces/default/ghosts', {
      token: alice.token,
      body: { apiVersion: 'agent.wecode.io/v1', kind: 'Ghost', metadata: { name: 'pdf-ghost' }, spec: { systemPrompt: 'You handle PDFs.', skills: ['pdf-tools'] } },
    });
    expect(ghost.status).toBe(201);
    const blocked = await srv.request('DELETE', '/api/v1/namespaces/default/skills/pdf-tools', { token: alice.token });
    expect(blocked.status).toBe(409);
    expect(blocked.body.message).toContain("Ghost 'pdf-ghost'");
    expect((await srv.request('DELETE', '/api/v1/namespaces/default/ghosts/pdf-ghost', { token: alice.token })).status).toBe(204);
    expect((await srv.request('DELETE', '/api/v1/namespaces/default/skills/pdf-tools', { token: alice.token })).status).toBe(204);
    expect((await download('pdf-tools', alice.token)).status).toBe(404);
    expect((await srv.request('GET', '/api/v1/namespaces/default/skills/pdf-tools/files', { token: alice.token })).status).toBe(404);
  });

  it("clears a Ghost's missing-skill warning once the skill is uploaded", async () => {
    await srv.request('POST', '/api/v1/namespaces/default/ghosts', {
      token: alice.token,
      body: { apiVersion: 'agent.wecode.io/v1', kind: 'Ghost', metadata: { name: 'early-ghost' }, spec: { systemPrompt: 'Early.', skills: ['late-skill'] } },
    });
    const before = await srv.request('GET', '/api/v1/namespaces/default/ghosts/early-ghost', { token: alice.token });
    expect(before.body.status.warnings).toEqual(["skill 'late-skill' not found; it will be skipped at run time"]);
    expect((await upload('late-skill', zip([{ name: 'SKILL.md', data: '---\ndescription: Late.\n---\nBody.' }]), { token: alice.token })).status).toBe(201);
    const after = await srv.request('GET', '/api/v1/namespaces/default/ghosts/early-ghost', { token: alice.token });
    expect(after.body.status.warnings).toBeUndefined();
  });
});

describe('bad packages are refused and nothing is written', () => {
  const good = (extra: ZipEntry[] = []) => [{ name: 'SKILL.md', data: '---\ndescription: Fine.\n---\nBody.\n' }, ...extra];
  const cases: Array<{ title: string; archive: () => Buffer; message: string }> = [
    { title: 'no SKILL.md', archive: () => zip([{ name: 'README.md', data: 'hi' }]), message: 'SKILL.md missing' },
    { title: 'SKILL.md in one of two top-level folders', archive: () => zip([{ name: 'a/SKILL.md', data: '---\ndescription: x\n---\n' }, { name: 'b/x.txt', data: 'x' }]), message: 'SKILL.md missing' },
    { title: "a '../' path", archive: () => zip(good([{ name: '../x', data: 'evil' }])), message: "entry '../x' escapes the archive root" },
    { title: "a '..' segment inside a path", archive: () => zip(good([{ name: 'scripts/../../x', data: 'evil' }])), message: "entry 'scripts/../../x' escapes the archive root" },
    { title: 'an absolute path', archive: () => zip(good([{ name: '/etc/cron.d/x', data: 'evil' }])), message: "entry '/etc/cron.d/x' has an absolute path" },
    { title: 'a drive letter', archive: () => zip(good([{ name: 'C:/evil.bat', data: 'x' }])), message: "entry 'C:/evil.bat' has a drive letter" },
    { title: 'a backslash', archive: () => zip(good([{ name: 'scripts\\..\\x', data: 'x' }])), message: 'has a backslash in its path' },
    { title: 'a path over 255 bytes', archive: () => zip(good([{ name: `${'d/'.repeat(128)}x`, data: 'x' }])), message: 'has a path longer than 255 bytes' },
    { title: 'a symbolic link', archive: () => zip(good([{ name: 'link', data: '/etc/passwd', mode: 0o120777, method: 0 }])), message: "entry 'link' is a symbolic link; only regular files and folders are allowed" },
    { title: 'a FIFO', archive: () => zip(good([{ name: 'pipe', mode: 0o010644, method: 0 }])), message: "entry 'pipe' is a device, FIFO or socket" },
    { title: 'names that collide ignoring case', archive: () => zip(good([{ name: 'Notes.txt', data: 'a' }, { name: 'notes.TXT', data: 'b' }])), message: "entries 'Notes.txt' and 'notes.TXT' differ only by case" },
    { title: 'an encrypted entry', archive: () => zip(good([{ name: 'secret.bin', data: 'x', method: 0, encrypted: true }])), message: "entry 'secret.bin' is encrypted" },
    { title: 'more than 1,000 entries', archive: () => zip(good(Array.from({ length: 1000 }, (_, i) => ({ name: `f/${i}.txt`, data: '', method: 0 as const })))), message: 'the archive has more than 1000 entries' },
    { title: 'bytes that are not a ZIP', archive: () => randomBytes(4096), message: 'not a valid ZIP archive' },
    { title: 'an empty body', archive: () => Buffer.alloc(0), message: 'the archive is empty' },
    { title: 'SKILL.md that is not UTF-8', archive: () => zip([{ name: 'SKILL.md', data: Buffer.from([0x2d, 0x2d, 0x2d, 0x0a, 0xff, 0xfe, 0x0a]) }]), message: 'SKILL.md is not valid UTF-8' },
    { title: 'SKILL.md without front matter', archive: () => zip([{ name: 'SKILL.md', data: '# Just markdown\n' }]), message: "SKILL.md does not start with YAML front matter (a '---' line)" },
    { title: 'SKILL.md whose front matter is not closed', archive: () => zip([{ name: 'SKILL.md', data: '---\ndescription: x\n' }]), message: "SKILL.md front matter is not closed by a '---' line" },
    { title: 'SKILL.md with broken YAML', archive: () => zip([{ name: 'SKILL.md', data: '---\ndescription: [unclosed\n---\n' }]), message: 'SKILL.md front matter is not valid YAML' },
    { title: 'SKILL.md without a description', archive: () => zip([{ name: 'SKILL.md', data: '---\nversion: 2\n---\nBody' }]), message: 'SKILL.md front matter has no description' },
    { title: 'SKILL.md over 256 KiB', archive: () => zip([{ name: 'SKILL.md', data: `---\ndescription: big\n---\n${'x'.repeat(256 * 1024)}` }]), message: 'SKILL.md is larger than 256 KiB' },
    // Zip bombs, built here: an honest header, a lying one, and a high ratio just over 1 MiB.
    { title: 'a zip bomb that declares 60 MiB', archive: () => zip(good([{ name: 'bomb.bin', data: Buffer.alloc(60 * 1024 * 1024) }])), message: 'the archive inflates to more than 50 MiB' },
    { title: 'a zip bomb whose header claims 100 bytes', archive: () => zip(good([{ name: 'bomb.bin', data: Buffer.alloc(60 * 1024 * 1024), declaredSize: 100 }])), message: "entry 'bomb.bin' does not inflate to the size its header declares" },
    { title: 'an entry compressed more than 100:1', archive: () => zip(good([{ name: 'a.bin', data: Buffer.alloc(2 * 1024 * 1024) }])), message: "compression ratio of 'a.bin' exceeds 100:1" },
    {
      title: 'many entries that together inflate past 50 MiB',
      archive: () => zip(good(Array.from({ length: 60 }, (_, i) => ({ name: `part${i}.bin`, data: Buffer.alloc(1024 * 1024) })))),
      message: 'the archive inflates to more than 50 MiB',
    },
  ];

  it.each(cases)('refuses $title with a 422 naming the problem', async ({ archive, message }) => {
    const body = archive();
    const packagesBefore = await srv.ctx.storage.db.selectFrom('skill_packages').select('skill_uid').execute();
    const res = await upload('bad-skill', body, { token: alice.token });
    expect(res.status).toBe(422);
    expect(res.body).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'Invalid', code: 422, details: { kind: 'Skill', name: 'bad-skill' } });
    expect(res.body.details.causes[0].message).toContain(message);
    expect(res.body.message).toContain(message);
    const got = await srv.request('GET', '/api/v1/namespaces/default/skills/bad-skill', { token: alice.token });
    expect(got.status).toBe(404);
    const rows = await srv.ctx.storage.db.selectFrom('skill_packages').select('skill_uid').execute();
    const stored = await srv.ctx.storage.db.selectFrom('resources').select('uid').where('kind', '=', 'Skill').where('name', '=', 'bad-skill').execute();
    expect(stored).toEqual([]);
    expect(rows).toEqual(packagesBefore);
  }, 30_000);

  it('keeps the current package when a replacement is refused', async () => {
    const first = zip(good());
    expect((await upload('steady', first, { token: alice.token })).status).toBe(201);
    expect((await upload('steady', zip([{ name: 'README.md', data: 'no skill' }]), { token: alice.token })).status).toBe(422);
    const res = await download('steady', alice.token);
    expect(res.bytes.equals(first)).toBe(true);
    const doc = await srv.request('GET', '/api/v1/namespaces/default/skills/steady', { token: alice.token });
    expect(doc.body.metadata.generation).toBe(1);
  });

  it('refuses a package over 10 MiB with 413, raw or multipart', async () => {
    const big = Buffer.concat([zip(good()), randomBytes(10 * 1024 * 1024)]);
    const raw = await upload('too-big', big, { token: alice.token });
    expect(raw.status).toBe(413);
    expect(raw.body).toMatchObject({ kind: 'Status', reason: 'RequestEntityTooLarge', code: 413, message: 'the skill package is larger than 10485760 bytes (WEGENT_SKILL_MAX_BYTES)' });
    const form = await upload('too-big', big, { token: alice.token, multipart: true });
    expect(form.status).toBe(413);
    expect(form.body.message).toBe('the skill package is larger than 10485760 bytes (WEGENT_SKILL_MAX_BYTES)');
    expect((await srv.request('GET', '/api/v1/namespaces/default/skills/too-big', { token: alice.token })).status).toBe(404);
  }, 30_000);

  it('refuses other media types with 415, before reading the body', async () => {
    const json = await upload('typed', Buffer.from('{"a":1}'), { token: alice.token, type: 'application/json' });
    expect(json.status).toBe(415);
    expect(json.body).toMatchObject({ kind: 'Status', reason: 'UnsupportedMediaType', code: 415 });
    const bigText = await upload('typed', Buffer.alloc(11 * 1024 * 1024, 0x61), { token: alice.token, type: 'text/plain' });
    expect(bigText.status).toBe(415);
  }, 30_000);

  it('accepts multipart bodies on the package route only', async () => {
    const form = new FormData();
    form.append('file', new Blob([zip(good())]), 'x.zip');
    const res = await fetch(`${srv.url}/api/v1/namespaces/default/apply`, { method: 'POST', headers: { authorization: `Bearer ${alice.token}` }, body: form });
    expect(res.status).toBe(415);
    const raw = await fetch(`${srv.url}/api/v1/namespaces/default/apply`, { method: 'POST', headers: { authorization: `Bearer ${alice.token}`, 'content-type': 'application/zip' }, body: zip(good()) });
    expect(raw.status).toBe(415);
  });

  it("refuses a multipart form without a 'file' field, 422", async () => {
    const form = new FormData();
    form.append('archive', new Blob([zip(good())]), 'x.zip');
    const res = await fetch(`${srv.url}/api/v1/namespaces/default/skills/no-file/package`, { method: 'PUT', headers: { authorization: `Bearer ${alice.token}` }, body: form });
    expect(res.status).toBe(422);
    expect(((await res.json()) as { details: { causes: Array<{ field: string }> } }).details.causes[0]!.field).toBe('file');
  });
});

describe.each(['mariadb', 'postgres'] as const)('packages on %s', (engine) => {
  let db: TestDatabase;
  let server: TestServer;
  let token: string;
  beforeAll(async () => {
    db = await createTestDatabase(engine);
    server = await startTestServer({ databaseUrl: db.url });
    token = (await server.createUser('carol')).token;
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await db?.drop();
  });

  it('stores 9 MiB of incompressible bytes and gives them back identical; the package goes when the Skill row is purged', async () => {
    const archive = zip([{ name: 'SKILL.md', data: '---\ndescription: Big data.\n---\nBody.\n' }, { name: 'data.bin', data: randomBytes(9 * 1024 * 1024), method: 0 }]);
    const put = await fetch(`${server.url}/api/v1/namespaces/default/skills/big-data/package`, { method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/zip' }, body: archive });
    expect(put.status).toBe(201);
    const got = await fetch(`${server.url}/api/v1/namespaces/default/skills/big-data/package`, { headers: { authorization: `Bearer ${token}` } });
    expect(got.headers.get('etag')).toBe(`"${sha256(archive)}"`);
    expect(Buffer.from(await got.arrayBuffer()).equals(archive)).toBe(true);
    const del = await fetch(`${server.url}/api/v1/namespaces/default/skills/big-data`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
    expect(del.status).toBe(204);
    expect(await server.ctx.storage.db.selectFrom('skill_packages').select('skill_uid').execute()).toHaveLength(1);
    expect(await server.ctx.storage.db.selectFrom('skill_package_chunks').select('seq').execute()).toHaveLength(10);
    await server.ctx.resources.store.purgeDeleted(new Date(Date.now() + 60_000).toISOString());
    expect(await server.ctx.storage.db.selectFrom('skill_packages').select('skill_uid').execute()).toEqual([]);
    expect(await server.ctx.storage.db.selectFrom('skill_package_chunks').select('skill_uid').execute()).toEqual([]);
  }, 60_000);
});

describe('the skills of a Ghost in a run (runtime.md §2, §8)', () => {
  let server: TestServer;
  let fake: FakeModelServer;
  let token: string;
  beforeAll(async () => {
    fake = await startFakeModelServer();
    server = await startTestServer({ privateHostsAllow: ['127.0.0.1'] });
    token = (await server.createUser('dave')).token;
    const applied = await server.request('POST', '/api/v1/apply', { token, raw: fakeTeamManifest(fake.openaiBaseUrl), headers: { 'content-type': 'application/yaml' } });
    expect(applied.status, applied.text).toBe(200);
    const put = (name: string, archive: Buffer) =>
      fetch(`${server.url}/api/v1/namespaces/default/skills/${name}/package`, { method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/zip' }, body: archive });
    expect((await put('pdf-tools', zip([{ name: 'SKILL.md', data: SKILL_MD }]))).status).toBe(201);
    expect((await put('code-only', zip([{ name: 'SKILL.md', data: '---\ndescription: Only for coders.\nbindShells: [Code]\n---\nCode.' }]))).status).toBe(201);
    const patched = await server.request('PATCH', '/api/v1/namespaces/default/ghosts/g', { token, body: { spec: { skills: ['pdf-tools', 'code-only', 'missing-skill'] } }, headers: { 'content-type': 'application/merge-patch+json' } });
    expect(patched.status, patched.text).toBe(200);
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await fake?.close();
  });

  it('shows name and description in the system prompt, loads the body on demand and warns about the skills left out', async () => {
    fake.script([{ steps: [{ toolCall: { id: 'c1', name: 'load_skill', arguments: { name: 'pdf-tools' } } }] }, 'Split it with the script.']);
    const res = await server.request('POST', '/api/v1/tasks', { token, body: { team: 't', message: 'Split my PDF' } });
    expect(res.status, res.text).toBe(201);
    const id = res.body.task.metadata.uid;
    await until(async () => (await server.request('GET', `/api/v1/tasks/${id}`, { token })).body.status.status === 'COMPLETED', 15_000, 'the run to complete');
    expect(fake.requests[0]!.body.messages[0]).toEqual({
      role: 'system',
      content: `You are terse.\n\nSkills you can load with the load_skill tool:\n- pdf-tools: Work with PDF files (split, merge, fill forms).\n\nCurrent date: ${new Date().toISOString().slice(0, 10)} (UTC).`,
    });
    const toolMessages = fake.requests[1]!.body.messages.filter((m: { role: string }) => m.role === 'tool');
    expect(toolMessages.map((m: { content: string }) => m.content)).toEqual([`# Skill: pdf-tools\n\n${BODY}`]);
    const messages = await server.request('GET', `/api/v1/tasks/${id}/messages`, { token });
    const answer = messages.body.items.find((m: { role: string }) => m.role === 'assistant');
    expect(answer.content).toBe('Split it with the script.');
    expect(answer.blocks.filter((b: { type: string }) => b.type === 'warning').map((b: { message: string }) => b.message)).toEqual([
      "Skill 'code-only' is not bound to the Chat shell and is left out.",
      "Skill 'missing-skill' was not found and is left out.",
    ]);
  }, 30_000);
});
