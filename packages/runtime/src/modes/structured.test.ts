import { describe, expect, it } from 'vitest';
import { parseAnswerObject, validatePlan, validateRoute } from './structured.js';

const names = ['Analyst', 'Writer'];
const memberError = '"member" must be one of: "Analyst", "Writer"';

describe('reading a structured answer (runtime.md §9 step 3)', () => {
  it('trims and strips one enclosing code fence, with or without json', () => {
    expect(parseAnswerObject('  ```json\n{"a":1}\n```  ')).toEqual({ a: 1 });
    expect(parseAnswerObject('```\n{"a":2}\n```')).toEqual({ a: 2 });
    expect(parseAnswerObject('```{"a":3}```')).toEqual({ a: 3 });
    expect(parseAnswerObject('\n{"a":4}\n')).toEqual({ a: 4 });
  });

  it('refuses anything but a JSON object', () => {
    for (const answer of ['', 'Writer', '[1]', 'null', '"x"', '```\n```\n{"a":1}\n```', 'Here: {"member":"Writer"}']) {
      expect(validateRoute(answer, names)).toEqual({ ok: false, error: 'the answer is not a JSON object' });
    }
  });
});

describe('route validation', () => {
  it('matches the member ignoring case and spaces, trims and cuts the reason to 500 characters, ignores unknown properties', () => {
    expect(validateRoute(JSON.stringify({ member: ' wRiTeR ', reason: `  ${'é'.repeat(600)} `, x: true }), names)).toEqual({ ok: true, value: { member: 'Writer', reason: 'é'.repeat(500) } });
    expect(validateRoute('{"member":"Analyst","reason":42}', names)).toEqual({ ok: true, value: { member: 'Analyst', reason: '' } });
  });

  it('names the allowed members when member is missing, not a string or unknown', () => {
    for (const answer of ['{}', '{"member":1}', '{"member":"Designer"}', '{"member":""}']) expect(validateRoute(answer, names)).toEqual({ ok: false, error: memberError });
  });
});

describe('plan validation', () => {
  it('accepts 1 to maxSubRequests sub-requests, drops the rest, trims and cuts requests to 4,000 characters', () => {
    const items = [
      { member: 'writer', request: `  ${'a'.repeat(4100)}  ` },
      { member: 'Analyst', request: 'Check it.' },
      { member: 'Nobody', request: '' },
    ];
    expect(validatePlan(JSON.stringify({ subRequests: items }), names, 2)).toEqual({
      ok: true,
      value: {
        subRequests: [
          { member: 'Writer', request: 'a'.repeat(4000) },
          { member: 'Analyst', request: 'Check it.' },
        ],
      },
    });
  });

  it('reports the first problem in order: the list, then each item with member before request', () => {
    const listError = '"subRequests" must be a list of 1 to 8 items';
    expect(validatePlan('{}', names, 8)).toEqual({ ok: false, error: listError });
    expect(validatePlan('{"subRequests":"do it"}', names, 8)).toEqual({ ok: false, error: listError });
    expect(validatePlan('{"subRequests":[]}', names, 8)).toEqual({ ok: false, error: listError });
    expect(validatePlan('{"subRequests":[{"member":"Writer","request":"x"},{"member":"Nobody","request":" "}]}', names, 8)).toEqual({ ok: false, error: `sub-request 2: ${memberError}` });
    expect(validatePlan('{"subRequests":[{"member":"Writer","request":"   "},{"member":"Nobody"}]}', names, 8)).toEqual({ ok: false, error: 'sub-request 1: "request" must be a non-empty string' });
    expect(validatePlan('{"subRequests":["Writer"]}', names, 8)).toEqual({ ok: false, error: `sub-request 1: ${memberError}` });
    expect(validatePlan('{"subRequests":[{"member":"Writer","request":7}]}', names, 8)).toEqual({ ok: false, error: 'sub-request 1: "request" must be a non-empty string' });
  });
});
