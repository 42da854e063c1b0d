import { describe, expect, it } from 'vitest';
import { calculatorTool, evaluateExpression, formatNumber } from './calculator.js';
import { ToolError } from './tool.js';

const calc = (expression: string) => formatNumber(evaluateExpression(expression));
const errorOf = (expression: string) => {
  try {
    evaluateExpression(expression);
  } catch (err) {
    return (err as Error).message;
  }
  return 'no error';
};

describe('calculator grammar', () => {
  it.each([
    ['1 + 2', '3'],
    ['2 + 3 * 4', '14'],
    ['(2 + 3) * 4', '20'],
    ['10 - 4 - 3', '3'],
    ['100 / 10 / 5', '2'],
    ['7 % 3', '1'],
    ['-7 % 3', '-1'],
    ['2 ^ 10', '1024'],
    ['2 ** 10', '1024'],
    ['2 ^ 3 ^ 2', '512'],
    ['2 ** 3 ** 2', '512'],
    ['-2 ^ 2', '-4'],
    ['(-2) ^ 2', '4'],
    ['2 ^ -1', '0.5'],
    ['2 * -3', '-6'],
    ['--3', '3'],
    ['+-+3', '-3'],
    ['1.5e3', '1500'],
    ['1.5E-3', '0.0015'],
    ['2e+2', '200'],
    ['.5 + .25', '0.75'],
    ['3.', '3'],
    ['0.1 + 0.2', '0.3'],
    ['pi', '3.14159265358979'],
    ['e', '2.71828182845905'],
    ['PI * 2', '6.28318530717959'],
    ['sqrt(16)', '4'],
    ['abs(-3.5)', '3.5'],
    ['round(2.5)', '3'],
    ['round(-2.5)', '-3'],
    ['floor(-2.5)', '-3'],
    ['ceil(2.1)', '3'],
    ['min(3, 1, 2)', '1'],
    ['max(3, 1, 2)', '3'],
    ['max(4)', '4'],
    ['log(1000)', '3'],
    ['ln(e)', '1'],
    ['exp(0)', '1'],
    ['sin(0)', '0'],
    ['cos(pi)', '-1'],
    ['tan(0)', '0'],
    ['sqrt(2) * sqrt(2)', '2'],
    ['  ( 1 + ( 2 * ( 3 + 4 ) ) )  ', '15'],
    ['123456789 * 1000000', '123456789000000'],
  ])('%s = %s', (expression, expected) => {
    expect(calc(expression)).toBe(expected);
  });

  it('formats large and tiny magnitudes with an exponent, others without', () => {
    expect(formatNumber(1e15)).toBe('1e+15');
    expect(formatNumber(999999999999999)).toBe('999999999999999');
    expect(formatNumber(2 ** 64)).toBe('1.84467440737096e+19');
    expect(formatNumber(0.000001)).toBe('0.000001');
    expect(formatNumber(0.0000001)).toBe('1e-7');
    expect(formatNumber(-1.5e-9)).toBe('-1.5e-9');
    expect(formatNumber(1 / 3)).toBe('0.333333333333333');
    expect(formatNumber(-0)).toBe('0');
  });

  it('reports division by zero for / and %', () => {
    expect(errorOf('1 / 0')).toBe('division by zero');
    expect(errorOf('5 % (2 - 2)')).toBe('division by zero');
  });

  it('reports the 1-based position of a syntax error', () => {
    expect(errorOf('1 +')).toBe('syntax error at position 4');
    expect(errorOf('1 + * 2')).toBe('syntax error at position 5');
    expect(errorOf('(1 + 2')).toBe('syntax error at position 7');
    expect(errorOf('1 + 2)')).toBe('syntax error at position 6');
    expect(errorOf('2 3')).toBe('syntax error at position 3');
    expect(errorOf('')).toBe('syntax error at position 1');
    expect(errorOf('1 = 1')).toBe('syntax error at position 3');
    expect(errorOf('"a"')).toBe('syntax error at position 1');
    expect(errorOf('sqrt(1, 2)')).toBe('syntax error at position 7');
    expect(errorOf('2e')).toBe('syntax error at position 2');
  });

  it('counts positions in characters, not UTF-16 units', () => {
    expect(errorOf('1 + 😀')).toBe('syntax error at position 5');
    expect(errorOf('😀 + 1')).toBe('syntax error at position 1');
  });

  it('refuses variables, assignment and unknown functions', () => {
    expect(errorOf('x + 1')).toBe('syntax error at position 1');
    expect(errorOf('x = 1')).toBe('syntax error at position 1');
    expect(errorOf('foo(1)')).toBe("unknown function 'foo'");
    expect(errorOf('constructor(1)')).toBe("unknown function 'constructor'");
    expect(errorOf('__proto__(1)')).toBe("unknown function '__proto__'");
    expect(errorOf('sqrt + 1')).toBe('syntax error at position 6');
  });

  it('reports results that are not finite numbers', () => {
    expect(errorOf('sqrt(-1)')).toBe('result is not a finite number');
    expect(errorOf('log(0)')).toBe('result is not a finite number');
    expect(errorOf('10 ^ 400')).toBe('result is not a finite number');
  });

  it('refuses expressions over 1,000 characters and very deep nesting quickly', () => {
    expect(errorOf('1+'.repeat(500) + '1')).toMatch(/longer than 1000/);
    const deep = '('.repeat(400) + '1' + ')'.repeat(400);
    const started = Date.now();
    expect(errorOf(deep)).toMatch(/syntax error at position/);
    expect(Date.now() - started).toBeLessThan(100);
  });
});

describe('calculator tool', () => {
  it('answers {result} as a string and turns calculator errors into tool errors', async () => {
    const tool = calculatorTool();
    const signal = new AbortController().signal;
    await expect(tool.execute({ expression: '6 * 7' }, { signal })).resolves.toEqual({ result: '42' });
    await expect(tool.execute({ expression: '1/0' }, { signal })).rejects.toEqual(new ToolError('division by zero'));
  });
});
