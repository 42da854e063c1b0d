import { describe, expect, it } from 'vitest';
import { formatAge, formatTable, resourceState } from './format.js';

describe('formatAge', () => {
  const now = Date.parse('2026-01-10T12:00:00.000Z');
  const ago = (ms: number) => new Date(now - ms).toISOString();
  it('prints ages the way kubectl does', () => {
    expect(formatAge(ago(5_000), now)).toBe('5s');
    expect(formatAge(ago(59_999), now)).toBe('59s');
    expect(formatAge(ago(3 * 60_000 + 10_000), now)).toBe('3m');
    expect(formatAge(ago(2 * 3600_000 + 5 * 60_000), now)).toBe('2h');
    expect(formatAge(ago(4 * 86400_000 + 3600_000), now)).toBe('4d');
    expect(formatAge(ago(800 * 86400_000), now)).toBe('2y');
  });
  it('shows a little clock skew as 0s and nonsense as such', () => {
    expect(formatAge(new Date(now + 500).toISOString(), now)).toBe('0s');
    expect(formatAge(new Date(now + 60_000).toISOString(), now)).toBe('<invalid>');
    expect(formatAge(undefined, now)).toBe('<unknown>');
  });
});

describe('formatTable', () => {
  it('aligns columns with three spaces and no trailing blanks', () => {
    expect(formatTable(['NAME', 'AGE'], [['a-long-name', '5s'], ['b', '10m']])).toBe('NAME          AGE\na-long-name   5s\nb             10m\n');
  });
});

describe('resourceState', () => {
  it('reads status.state, and status.status for a Task', () => {
    expect(resourceState({ kind: 'Ghost', status: { state: 'Available' } })).toBe('Available');
    expect(resourceState({ kind: 'Task', status: { status: 'RUNNING' } })).toBe('RUNNING');
    expect(resourceState({ kind: 'Ghost' })).toBe('<none>');
  });
});
