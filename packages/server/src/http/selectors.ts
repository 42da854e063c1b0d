import { parseLabelSelector, SelectorSyntaxError, type SelectorTerm } from '@wegent/core';
import { BadRequestError } from '../errors.js';

/** The `labelSelector` query parameter parsed; a syntax error is a 400 naming the position (api.md §2.7). */
export function labelSelectorParam(text: string | undefined): SelectorTerm[] | undefined {
  if (!text) return undefined;
  try {
    return parseLabelSelector(text);
  } catch (e) {
    if (e instanceof SelectorSyntaxError) throw new BadRequestError(e.message);
    throw e;
  }
}
