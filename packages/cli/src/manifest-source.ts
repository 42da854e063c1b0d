import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { UsageError } from './errors.js';

const MANIFEST_EXTENSIONS = ['.yaml', '.yml', '.json'];

/** Reads all of a stream as UTF-8 text. */
export async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** JSON text (one document, an array, or a List) re-emitted as YAML documents. */
function jsonToYamlDocuments(text: string, origin: string): string[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${origin}: invalid JSON: ${(e as Error).message}`);
  }
  const list = value as { kind?: unknown; items?: unknown };
  const docs = Array.isArray(value) ? value : list && typeof list === 'object' && list.kind === 'List' && Array.isArray(list.items) ? list.items : [value];
  return docs.map((d) => stringify(d, { lineWidth: 0 }));
}

/** Stdin may hold JSON or YAML: JSON when it parses as JSON (YAML flow style like `{kind: Ghost}` does not). */
function stdinDocuments(text: string): string[] {
  const t = text.trimStart();
  if (t.startsWith('{') || t.startsWith('[')) {
    try {
      JSON.parse(text);
      return jsonToYamlDocuments(text, 'stdin');
    } catch {
      /* YAML, then */
    }
  }
  return [text];
}

/** The files a `-f` path stands for: itself, or a folder's *.yaml, *.yml, *.json in name order (not recursive). */
function filesOf(p: string): string[] {
  let st;
  try {
    st = statSync(p);
  } catch {
    throw new UsageError(`the path '${p}' does not exist`);
  }
  if (!st.isDirectory()) return [p];
  return readdirSync(p, { withFileTypes: true })
    .filter((e) => MANIFEST_EXTENSIONS.includes(path.extname(e.name).toLowerCase()))
    .filter((e) => e.isFile() || (e.isSymbolicLink() && statSync(path.join(p, e.name)).isFile()))
    .map((e) => e.name)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((name) => path.join(p, name));
}

/**
 * Turns the `-f` arguments (files, folders, `-` for stdin) into one multi-document YAML body.
 * YAML is passed through as written (so the server's "document N, line L" messages stay useful);
 * JSON is parsed and re-emitted as YAML documents.
 */
export async function readManifests(sources: string[], stdin: NodeJS.ReadableStream): Promise<string> {
  if (sources.length === 0) throw new UsageError("must specify one of -f or --filename");
  if (sources.filter((s) => s === '-').length > 1) throw new UsageError("'-' (stdin) may be given only once");
  const parts: string[] = [];
  for (const source of sources) {
    if (source === '-') {
      const text = await readAll(stdin);
      parts.push(...stdinDocuments(text));
      continue;
    }
    const files = filesOf(source);
    if (files.length === 0) throw new UsageError(`no *.yaml, *.yml or *.json files in '${source}'`);
    for (const file of files) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (e) {
        throw new UsageError(`cannot read '${file}': ${(e as Error).message}`);
      }
      const isJson = path.extname(file).toLowerCase() === '.json';
      parts.push(...(isJson ? jsonToYamlDocuments(text, file) : [text]));
    }
  }
  const body = parts
    .filter((p) => p.trim() !== '')
    .map((p) => (p.endsWith('\n') ? p : p + '\n'))
    .join('---\n');
  if (body.trim() === '') throw new UsageError('no objects passed: the input is empty');
  return body;
}
