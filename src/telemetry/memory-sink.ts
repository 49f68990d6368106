// The last N records in memory: feedback lookups and the console when there is no Redis, and tests.
// A ring buffer plus an id index, both bounded by `capacity`, holding each record as its JSON (one flat
// string per record is little work for the garbage collector); reads parse it back.
import { recordJson, type RequestRecord } from './record.js';
import { FinishSink } from './sink.js';

export class MemorySink extends FinishSink {
  readonly name = 'memory';
  private readonly ring: Array<string | undefined>;
  private readonly ids: Array<string | undefined>;
  private readonly byId = new Map<string, string>();
  private next = 0;
  private count = 0;

  constructor(readonly capacity = 1000) {
    super();
    this.ring = new Array<string | undefined>(capacity);
    this.ids = new Array<string | undefined>(capacity);
  }

  protected onRecord(r: RequestRecord): void {
    if (this.capacity === 0) return;
    const old = this.ids[this.next];
    if (old !== undefined) this.byId.delete(old);
    const json = recordJson(r);
    this.ring[this.next] = json;
    this.ids[this.next] = r.id;
    this.byId.set(r.id, json);
    this.next = (this.next + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
  }

  /** Adds a record as the `finish` stage would. */
  push(r: RequestRecord): void {
    this.onRecord(r);
  }

  get(id: string): RequestRecord | undefined {
    const json = this.byId.get(id);
    return json === undefined ? undefined : (JSON.parse(json) as RequestRecord);
  }

  /** Oldest first. */
  get records(): RequestRecord[] {
    const out: RequestRecord[] = [];
    for (let i = 0; i < this.count; i++)
      out.push(JSON.parse(this.ring[(this.next - this.count + i + this.capacity) % this.capacity] as string) as RequestRecord);
    return out;
  }
}
