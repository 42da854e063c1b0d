/** Polls `check` until it returns a truthy value (or throws after `ms`). */
export async function until<T>(check: () => T | undefined | false | Promise<T | undefined | false>, ms = 10_000, what = 'a condition'): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 15));
  }
}
