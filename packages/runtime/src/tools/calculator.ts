import { z } from 'zod';
import { ToolError, type RuntimeTool } from './tool.js';

/**
 * The calculator's own exact parser (runtime.md §6.1). Grammar, lowest precedence first:
 *
 *   expression := term (("+" | "-") term)*
 *   term       := unary (("*" | "/" | "%") unary)*
 *   unary      := ("+" | "-") unary | power
 *   power      := primary (("^" | "**") unary)?        right-associative; -2^2 = -(2^2)
 *   primary    := number | constant | function "(" expression ("," expression)* ")" | "(" expression ")"
 *
 * Never uses eval or Function. Positions in errors are 1-based characters.
 */

export class CalculatorError extends Error {
  override readonly name = 'CalculatorError';
}

const CONSTANTS = new Map<string, number>([
  ['pi', Math.PI],
  ['e', Math.E],
]);

type Fn = { arity: 1 | 'any'; apply: (args: number[]) => number };
const FUNCTIONS = new Map<string, Fn>(
  Object.entries({
  sqrt: { arity: 1, apply: ([x]) => Math.sqrt(x!) },
  abs: { arity: 1, apply: ([x]) => Math.abs(x!) },
  // Half away from zero, as people round (Math.round rounds -2.5 to -2).
  round: { arity: 1, apply: ([x]) => Math.sign(x!) * Math.round(Math.abs(x!)) },
  floor: { arity: 1, apply: ([x]) => Math.floor(x!) },
  ceil: { arity: 1, apply: ([x]) => Math.ceil(x!) },
  min: { arity: 'any', apply: (args) => Math.min(...args) },
  max: { arity: 'any', apply: (args) => Math.max(...args) },
  log: { arity: 1, apply: ([x]) => Math.log10(x!) },
  ln: { arity: 1, apply: ([x]) => Math.log(x!) },
  exp: { arity: 1, apply: ([x]) => Math.exp(x!) },
  sin: { arity: 1, apply: ([x]) => Math.sin(x!) },
  cos: { arity: 1, apply: ([x]) => Math.cos(x!) },
  tan: { arity: 1, apply: ([x]) => Math.tan(x!) },
  } satisfies Record<string, Fn>),
);

type Token =
  | { kind: 'number'; value: number; pos: number }
  | { kind: 'name'; name: string; pos: number }
  | { kind: 'op'; op: '+' | '-' | '*' | '/' | '%' | '^' | '(' | ')' | ','; pos: number }
  | { kind: 'bad'; pos: number }
  | { kind: 'end'; pos: number };

export const MAX_EXPRESSION_LENGTH = 1000;
const MAX_DEPTH = 200;
const TIME_BUDGET_MS = 100;

function syntaxError(pos: number): CalculatorError {
  return new CalculatorError(`syntax error at position ${pos}`);
}

/** Splits an expression into tokens; positions count code points from 1. */
function tokenize(expression: string): Token[] {
  const chars = Array.from(expression);
  const tokens: Token[] = [];
  let i = 0;
  const isDigit = (c: string | undefined) => c !== undefined && c >= '0' && c <= '9';
  while (i < chars.length) {
    const c = chars[i]!;
    const pos = i + 1;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
      continue;
    }
    if (isDigit(c) || (c === '.' && isDigit(chars[i + 1]))) {
      let j = i;
      while (isDigit(chars[j])) j++;
      if (chars[j] === '.') {
        j++;
        while (isDigit(chars[j])) j++;
      }
      if ((chars[j] === 'e' || chars[j] === 'E') && (isDigit(chars[j + 1]) || ((chars[j + 1] === '+' || chars[j + 1] === '-') && isDigit(chars[j + 2])))) {
        j += 2;
        while (isDigit(chars[j])) j++;
      }
      tokens.push({ kind: 'number', value: Number(chars.slice(i, j).join('')), pos });
      i = j;
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      let j = i;
      while (j < chars.length && /[A-Za-z0-9_]/.test(chars[j]!)) j++;
      tokens.push({ kind: 'name', name: chars.slice(i, j).join(''), pos });
      i = j;
      continue;
    }
    if (c === '*' && chars[i + 1] === '*') {
      tokens.push({ kind: 'op', op: '^', pos });
      i += 2;
      continue;
    }
    if ('+-*/%^(),'.includes(c)) {
      tokens.push({ kind: 'op', op: c as '+', pos });
      i++;
      continue;
    }
    // Reported by the parser when it reaches it, so the first problem in reading order wins.
    tokens.push({ kind: 'bad', pos });
    break;
  }
  tokens.push({ kind: 'end', pos: chars.length + 1 });
  return tokens;
}

class Parser {
  #i = 0;
  #depth = 0;
  readonly #deadline = Date.now() + TIME_BUDGET_MS;
  constructor(readonly tokens: Token[]) {}

  get #peek(): Token {
    return this.tokens[this.#i]!;
  }

  #isOp(op: string): boolean {
    const t = this.#peek;
    return t.kind === 'op' && t.op === op;
  }

  #expectOp(op: string): void {
    if (!this.#isOp(op)) throw syntaxError(this.#peek.pos);
    this.#i++;
  }

  parse(): number {
    const value = this.#expression();
    if (this.#peek.kind !== 'end') throw syntaxError(this.#peek.pos);
    return value;
  }

  #enter(): void {
    if (++this.#depth > MAX_DEPTH) throw syntaxError(this.#peek.pos);
    if (Date.now() > this.#deadline) throw new CalculatorError('the expression took too long to evaluate');
  }

  #expression(): number {
    this.#enter();
    let value = this.#term();
    while (this.#isOp('+') || this.#isOp('-')) {
      const op = (this.#peek as { op: string }).op;
      this.#i++;
      const right = this.#term();
      value = op === '+' ? value + right : value - right;
    }
    this.#depth--;
    return value;
  }

  #term(): number {
    let value = this.#unary();
    while (this.#isOp('*') || this.#isOp('/') || this.#isOp('%')) {
      const op = (this.#peek as { op: string }).op;
      this.#i++;
      const right = this.#unary();
      if (op === '*') value *= right;
      else if (right === 0) throw new CalculatorError('division by zero');
      else value = op === '/' ? value / right : value % right;
    }
    return value;
  }

  #unary(): number {
    if (this.#isOp('+') || this.#isOp('-')) {
      const negative = this.#isOp('-');
      this.#i++;
      this.#enter();
      const value = this.#unary();
      this.#depth--;
      return negative ? -value : value;
    }
    return this.#power();
  }

  #power(): number {
    const base = this.#primary();
    if (this.#isOp('^')) {
      this.#i++;
      this.#enter();
      const exponent = this.#unary();
      this.#depth--;
      return Math.pow(base, exponent);
    }
    return base;
  }

  #primary(): number {
    const t = this.#peek;
    if (t.kind === 'number') {
      this.#i++;
      return t.value;
    }
    if (t.kind === 'op' && t.op === '(') {
      this.#i++;
      const value = this.#expression();
      this.#expectOp(')');
      return value;
    }
    if (t.kind === 'name') {
      const name = t.name.toLowerCase();
      this.#i++;
      if (this.#isOp('(')) {
        const fn = FUNCTIONS.get(name);
        if (!fn) throw new CalculatorError(`unknown function '${t.name}'`);
        this.#i++;
        const args = [this.#expression()];
        while (this.#isOp(',')) {
          if (fn.arity === 1) throw syntaxError(this.#peek.pos);
          this.#i++;
          args.push(this.#expression());
        }
        this.#expectOp(')');
        return fn.apply(args);
      }
      const constant = CONSTANTS.get(name);
      if (constant !== undefined) return constant;
      throw FUNCTIONS.has(name) ? syntaxError(this.#peek.pos) : syntaxError(t.pos);
    }
    throw syntaxError(t.pos);
  }
}

/** Evaluates an expression of the §6.1 grammar; throws `CalculatorError` with the §6.1 messages. */
export function evaluateExpression(expression: string): number {
  if (Array.from(expression).length > MAX_EXPRESSION_LENGTH) throw new CalculatorError(`the expression is longer than ${MAX_EXPRESSION_LENGTH} characters`);
  const value = new Parser(tokenize(expression)).parse();
  if (!Number.isFinite(value)) throw new CalculatorError('result is not a finite number');
  return value;
}

/** Formats a result: up to 15 significant digits, no exponent for magnitudes in [1e-6, 1e15). */
export function formatNumber(value: number): string {
  if (value === 0) return '0';
  const rounded = Number(value.toPrecision(15));
  const magnitude = Math.abs(rounded);
  // String() writes no exponent from 1e-6 up to 1e21; above 1e15 the spec wants one.
  if (magnitude >= 1e-6 && magnitude < 1e15) return String(rounded);
  const [mantissa, exponent] = rounded.toExponential(14).split('e');
  return `${mantissa!.replace(/\.?0+$/, '')}e${exponent}`;
}

export const CalculatorInput = z.object({
  expression: z.string().max(MAX_EXPRESSION_LENGTH).describe('An arithmetic expression, e.g. (3 + 4) * 2 ^ 10 / sqrt(2)'),
});
export type CalculatorInput = z.infer<typeof CalculatorInput>;

/** The `calculator` tool (runtime.md §6.1). */
export function calculatorTool(): RuntimeTool<CalculatorInput> {
  return {
    name: 'calculator',
    description:
      'Evaluate an arithmetic expression exactly. Supports numbers (decimal, scientific notation), + - * / %, ^ or ** (power), parentheses, ' +
      'constants pi and e, and the functions sqrt abs round floor ceil min max log (base 10) ln exp sin cos tan (radians).',
    source: 'builtin',
    inputSchema: CalculatorInput,
    timeoutMs: 1_000,
    execute: async (input) => {
      try {
        return { result: formatNumber(evaluateExpression(input.expression)) };
      } catch (err) {
        if (err instanceof CalculatorError) throw new ToolError(err.message);
        throw err;
      }
    },
  };
}
