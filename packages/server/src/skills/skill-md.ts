import { isMap, isScalar, parseDocument } from 'yaml';
import { ManifestSyntaxError, parseYamlDocuments } from '@wegent/core';
import { ArchiveProblem } from './archive.js';

/** The Skill spec a SKILL.md describes: its front-matter keys, with the body as `prompt`. */
export type SkillMdSpec = Record<string, unknown> & { description: unknown; prompt: string };

const OPENING = /^---[ \t]*\r?\n/;
const CLOSING = /^---[ \t]*\r?$/m;

/**
 * Parses SKILL.md (resources.md §15.2): YAML front matter between two `---` lines, then the Markdown
 * body. `name` is informational (the resource name comes from the URL) and is dropped; every other key
 * goes into the spec as written, except that a numeric `version` keeps its source text (`1.0`).
 */
export function parseSkillMd(bytes: Buffer): SkillMdSpec {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ArchiveProblem('SKILL.md is not valid UTF-8');
  }
  if (text.startsWith('\uFEFF')) text = text.slice(1);
  const opening = OPENING.exec(text);
  if (!opening) throw new ArchiveProblem("SKILL.md does not start with YAML front matter (a '---' line)");
  const rest = text.slice(opening[0].length);
  const closing = CLOSING.exec(rest);
  if (!closing) throw new ArchiveProblem("SKILL.md front matter is not closed by a '---' line");
  const yamlText = rest.slice(0, closing.index);
  // The body starts on the line after the closing `---`; blank lines before its first text are dropped.
  const body = rest.slice(closing.index + closing[0].length).replace(/^(?:[ \t]*\r?\n)+/, '');

  let docs: unknown[];
  try {
    docs = parseYamlDocuments(yamlText);
  } catch (e) {
    if (e instanceof ManifestSyntaxError) throw new ArchiveProblem(`SKILL.md front matter is not valid YAML: ${e.message.replace(/^document 1, /, '')}`);
    throw e;
  }
  const front = docs[0];
  if (docs.length !== 1 || front === null || typeof front !== 'object' || Array.isArray(front)) throw new ArchiveProblem('SKILL.md front matter must be a YAML mapping');
  const spec: Record<string, unknown> = { ...(front as Record<string, unknown>) };
  delete spec.name;
  if (spec.description === undefined || spec.description === null || spec.description === '') throw new ArchiveProblem('SKILL.md front matter has no description');
  if (typeof spec.version === 'number') spec.version = versionSource(yamlText) ?? String(spec.version);
  return { ...spec, description: spec.description, prompt: body };
}

/** The source text of a plain numeric `version` scalar, so `1.0` stays "1.0" rather than "1". */
function versionSource(yamlText: string): string | undefined {
  const doc = parseDocument(yamlText, { uniqueKeys: true, merge: false });
  if (!isMap(doc.contents)) return undefined;
  const node = doc.contents.get('version', true);
  return isScalar(node) && typeof node.source === 'string' ? node.source : undefined;
}
