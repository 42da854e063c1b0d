/**
 * A Proxy `get` that answers `overrides` first, then the target's own members, its methods bound once
 * (a host's methods are read once per streamed chunk).
 */
export function boundGetter<T extends object>(overrides: Record<string, unknown>): ProxyHandler<T>['get'] {
  const bound = new Map<PropertyKey, unknown>(Object.entries(overrides));
  return (target, prop) => {
    const known = bound.get(prop);
    if (known !== undefined) return known;
    const value: unknown = Reflect.get(target, prop, target);
    if (typeof value !== 'function') return value;
    const fn = (value as (...a: unknown[]) => unknown).bind(target);
    bound.set(prop, fn);
    return fn;
  };
}
