// Sticky multi-turn routing: a conversation stays on the backend chosen for its first turn, so a
// follow-up question is not answered by a different model than the one that wrote the earlier turns.
import { z } from 'zod';
import type { StickyConfig } from '../config/schema.js';
import { contentText } from './prompt-text.js';
import { hashText53 } from '../util/hash.js';
import { Lru } from '../util/lru.js';

type Sticky = z.infer<typeof StickyConfig>;
export type StickyKey = string | number;

export interface ConversationKey {
  /**
   * 'h:' + the header's value, or a 53-bit hash of the opening: a number, so the store's map hashes it
   * without a string to build (base-36 digits and a prefix: ~2 µs per routed request in a gateway profile).
   */
  key: StickyKey;
  /** The request continues a conversation (has earlier assistant turns or names its conversation). */
  followUp: boolean;
}

/**
 * The conversation's identity: the client's conversation-id header if sent, else a hash of the system
 * prompt and the first user message — the part of a conversation that never changes between turns.
 */
export function conversationKey(cfg: Sticky, body: Record<string, unknown>, header: string | undefined): ConversationKey | null {
  if (header !== undefined && header !== '') return { key: `h:${header}`, followUp: true };
  const messages = body.messages;
  if (!Array.isArray(messages)) return null;
  let opening = '';
  let followUp = false;
  let sawUser = false;
  for (const m of messages as Array<{ role?: unknown; content?: unknown }>) {
    if (m.role === 'assistant' || m.role === 'tool') followUp = true;
    if (!sawUser && (m.role === 'system' || m.role === 'developer' || m.role === 'user')) {
      opening += `${String(m.role)}\u0000${contentText(m.content)}\u0001`;
      if (m.role === 'user') sawUser = true;
    }
  }
  if (!sawUser) return null;
  return { key: hashText53(opening), followUp };
}

/** Bounded LRU of conversation → backend with a TTL; shared by all configs (survives reloads). */
export class StickyStore {
  private readonly map: Lru<StickyKey, { backend: string; expires: number }>;

  constructor(maxEntries: number) {
    this.map = new Lru(maxEntries);
  }

  get(key: StickyKey, now: number): string | undefined {
    const hit = this.map.peek(key);
    if (hit === undefined) return undefined;
    if (hit.expires <= now) {
      this.map.delete(key);
      return undefined;
    }
    return hit.backend;
  }

  set(key: StickyKey, backend: string, expires: number): void {
    this.map.set(key, { backend, expires });
  }

  get size(): number {
    return this.map.size;
  }
}
