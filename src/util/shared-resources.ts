/**
 * Resources that outlive one config (keep-alive pools, loaded embedders) are shared by key and
 * reference-counted, so a reload that leaves a backend unchanged keeps its warm connections and a
 * reload that drops it closes it once the last runtime using it is gone.
 */
export class SharedResources<T> {
  private readonly entries = new Map<string, { value: T; refs: number }>();

  constructor(private readonly dispose: (value: T) => Promise<void>) {}

  async acquire(key: string, create: () => Promise<T> | T): Promise<T> {
    const hit = this.entries.get(key);
    if (hit) {
      hit.refs++;
      return hit.value;
    }
    const value = await create();
    const raced = this.entries.get(key); // another acquire of the same key finished first
    if (raced) {
      raced.refs++;
      await this.dispose(value);
      return raced.value;
    }
    this.entries.set(key, { value, refs: 1 });
    return value;
  }

  async release(key: string): Promise<void> {
    const hit = this.entries.get(key);
    if (!hit) return;
    if (--hit.refs > 0) return;
    this.entries.delete(key);
    await this.dispose(hit.value);
  }

  get size(): number {
    return this.entries.size;
  }

  async closeAll(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.allSettled(all.map((e) => this.dispose(e.value)));
  }
}
