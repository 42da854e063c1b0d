import type { Cause } from './status.js';

const LABEL_NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/;
const LABEL_PREFIX = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$/;
export const RESERVED_LABEL_PREFIX = 'wegent.io/';
export const MAX_LABELS = 64;

/** Whether a label (or annotation) key follows the Kubernetes key rule (resources.md §3.1). */
export function isValidLabelKey(key: string): boolean {
  const slash = key.indexOf('/');
  if (slash === -1) return LABEL_NAME.test(key);
  if (key.indexOf('/', slash + 1) !== -1) return false;
  return LABEL_PREFIX.test(key.slice(0, slash)) && LABEL_NAME.test(key.slice(slash + 1));
}

export function isValidLabelValue(value: string): boolean {
  return LABEL_VALUE.test(value);
}

/** Validates a labels map; returns the field causes (empty when valid). */
export function validateLabels(labels: Record<string, unknown>, base = 'metadata.labels'): Cause[] {
  const causes: Cause[] = [];
  const keys = Object.keys(labels);
  if (keys.length > MAX_LABELS) {
    causes.push({ field: base, reason: 'FieldValueTooLong', message: `at most ${MAX_LABELS} labels` });
  }
  for (const key of keys) {
    const value = labels[key];
    if (!isValidLabelKey(key)) {
      causes.push({ field: `${base}[${key}]`, reason: 'FieldValueInvalid', message: 'invalid label key' });
    } else if (typeof value !== 'string' || !isValidLabelValue(value)) {
      causes.push({
        field: `${base}[${key}]`,
        reason: 'FieldValueInvalid',
        message: "label values are 0-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
      });
    }
  }
  return causes;
}

export type SelectorTerm =
  | { op: 'eq' | 'neq'; key: string; value: string }
  | { op: 'in' | 'notin'; key: string; values: string[] }
  | { op: 'exists' | 'absent'; key: string };

export class SelectorSyntaxError extends Error {
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(`invalid labelSelector at position ${position}: ${message}`);
  }
}

/** Parses a Kubernetes label selector (api.md §2.7); throws SelectorSyntaxError naming the position. */
export function parseLabelSelector(input: string): SelectorTerm[] {
  const terms: SelectorTerm[] = [];
  let i = 0;
  const n = input.length;
  const skipWs = () => {
    while (i < n && input[i] === ' ') i++;
  };
  const readToken = (): string => {
    skipWs();
    const start = i;
    while (i < n && /[A-Za-z0-9._/-]/.test(input[i]!)) i++;
    return input.slice(start, i);
  };
  if (input.trim() === '') return terms;
  while (i <= n) {
    skipWs();
    let negate = false;
    if (input[i] === '!') {
      negate = true;
      i++;
    }
    const keyPos = i;
    const key = readToken();
    if (!key || !isValidLabelKey(key)) throw new SelectorSyntaxError('expected a label key', keyPos);
    skipWs();
    if (negate) {
      terms.push({ op: 'absent', key });
    } else if (input.startsWith('==', i) || input.startsWith('!=', i) || input[i] === '=') {
      const op = input.startsWith('!=', i) ? 'neq' : 'eq';
      i += input.startsWith('==', i) || input.startsWith('!=', i) ? 2 : 1;
      const valuePos = i;
      const value = readToken();
      if (!isValidLabelValue(value)) throw new SelectorSyntaxError('invalid label value', valuePos);
      terms.push({ op, key, value });
    } else if (/^(in|notin)\s*\(/.test(input.slice(i))) {
      const op = input.startsWith('notin', i) ? 'notin' : 'in';
      i += op.length;
      skipWs();
      i++; // '('
      const values: string[] = [];
      for (;;) {
        const valuePos = i;
        const value = readToken();
        if (!isValidLabelValue(value)) throw new SelectorSyntaxError('invalid label value', valuePos);
        values.push(value);
        skipWs();
        if (input[i] === ',') {
          i++;
          continue;
        }
        if (input[i] === ')') {
          i++;
          break;
        }
        throw new SelectorSyntaxError("expected ',' or ')'", i);
      }
      terms.push({ op, key, values });
    } else {
      terms.push({ op: 'exists', key });
    }
    skipWs();
    if (i >= n) break;
    if (input[i] !== ',') throw new SelectorSyntaxError("expected ','", i);
    i++;
  }
  return terms;
}

/** Whether a labels map satisfies every term of a selector. */
export function matchesSelector(labels: Record<string, string>, terms: SelectorTerm[]): boolean {
  for (const term of terms) {
    const has = Object.prototype.hasOwnProperty.call(labels, term.key);
    const value = has ? labels[term.key] : undefined;
    switch (term.op) {
      case 'eq':
        if (value !== term.value) return false;
        break;
      case 'neq':
        if (value === term.value) return false;
        break;
      case 'in':
        if (value === undefined || !term.values.includes(value)) return false;
        break;
      case 'notin':
        if (value !== undefined && term.values.includes(value)) return false;
        break;
      case 'exists':
        if (!has) return false;
        break;
      case 'absent':
        if (has) return false;
        break;
    }
  }
  return true;
}
