import { isMap, isScalar, isSeq, isAlias, isPair, LineCounter, parseAllDocuments, stringify, type Node } from 'yaml';

/** Limits that a YAML body must respect before anything is expanded (api.md §2.9). */
export const YAML_LIMITS = { maxDepth: 64, maxAliases: 100, maxNodes: 200_000 } as const;

export class ManifestSyntaxError extends Error {
  constructor(
    message: string,
    readonly documentNumber?: number,
  ) {
    super(message);
  }
}

const STANDARD_TAG = /^tag:yaml\.org,2002:(str|int|float|bool|null|map|seq|binary|timestamp)$/;

/** Walks the parsed (unexpanded) node tree and refuses deep nesting, many aliases or custom tags. */
function checkLimits(root: Node | null | undefined, docNo: number, state: { nodes: number; aliases: number }, lc: LineCounter): void {
  const stack: Array<[unknown, number]> = [[root, 1]];
  while (stack.length) {
    const [node, depth] = stack.pop()!;
    if (!node) continue;
    if (++state.nodes > YAML_LIMITS.maxNodes) throw new ManifestSyntaxError(`document ${docNo}: more than ${YAML_LIMITS.maxNodes} YAML nodes`, docNo);
    if (depth > YAML_LIMITS.maxDepth) throw new ManifestSyntaxError(`document ${docNo}: nesting deeper than ${YAML_LIMITS.maxDepth} levels`, docNo);
    if (isAlias(node)) {
      if (++state.aliases > YAML_LIMITS.maxAliases) throw new ManifestSyntaxError(`document ${docNo}: more than ${YAML_LIMITS.maxAliases} YAML aliases`, docNo);
      continue;
    }
    const tag = (node as { tag?: string }).tag;
    if (tag && !STANDARD_TAG.test(tag)) {
      const range = (node as { range?: [number, number, number] }).range;
      const pos = range ? lc.linePos(range[0]) : undefined;
      throw new ManifestSyntaxError(
        `document ${docNo}${pos ? `, line ${pos.line}, column ${pos.col}` : ''}: custom YAML tag '${tag}' is not allowed`,
        docNo,
      );
    }
    if (isMap(node) || isSeq(node)) {
      for (const item of node.items as unknown[]) {
        if (isPair(item)) {
          stack.push([item.key, depth + 1]);
          stack.push([item.value, depth + 1]);
        } else stack.push([item, depth + 1]);
      }
    } else if (!isScalar(node)) {
      continue;
    }
  }
}

/**
 * Parses a multi-document YAML text into plain values. Empty and comment-only documents are dropped.
 * Syntax errors name the document number (among non-empty documents) and line/column.
 */
export function parseYamlDocuments(text: string): unknown[] {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, uniqueKeys: true, prettyErrors: false, merge: false, strict: true });
  const list = Array.isArray(docs) ? docs : [docs];
  const out: unknown[] = [];
  const state = { nodes: 0, aliases: 0 };
  let docNo = 0;
  for (const doc of list) {
    const empty = doc.contents === null && doc.errors.length === 0;
    if (empty) continue;
    docNo++;
    const err = doc.errors[0];
    if (err) {
      const pos = lineCounter.linePos(err.pos[0]);
      const detail = err.message.split('\n')[0]!.replace(/ at line \d+, column \d+.*$/, '');
      throw new ManifestSyntaxError(`document ${docNo}, line ${pos.line}, column ${pos.col}: ${detail}`, docNo);
    }
    checkLimits(doc.contents as Node, docNo, state, lineCounter);
    try {
      out.push(doc.toJS({ maxAliasCount: YAML_LIMITS.maxAliases }));
    } catch (e) {
      throw new ManifestSyntaxError(`document ${docNo}: ${(e as Error).message.split('\n')[0]}`, docNo);
    }
  }
  return out;
}

/** Prints documents as multi-document YAML. */
export function printYaml(docs: unknown[]): string {
  return docs.map((d) => stringify(d, { lineWidth: 0 })).join('---\n');
}

/** Deepest nesting of a JSON value (objects and arrays count one level each). */
export function jsonDepth(value: unknown, limit = Infinity): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (d > max) max = d;
    if (max > limit) return max;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (child !== null && typeof child === 'object') stack.push([child, d + 1]);
    }
  }
  return max;
}
