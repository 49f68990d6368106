// The one mutable thing in the config path: which Runtime new requests get. A request pins the
// runtime it started with; a reload swaps the reference and the old runtime is disposed when its last
// pinned request ends. A bad edit never replaces a good runtime.
import { redactSecrets, secretValues } from '../config/redact.js';
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';
import { ConfigErrors } from '../errors.js';
import { RoutingState } from '../routers/state.js';
import { compileRuntime, createSharedPools, type Runtime } from './compile.js';
import { loadConfigFile } from '../config/load.js';

export interface ReloadStatus {
  ok: boolean;
  at: string;
  trigger: string;
  generation: number;
  errors: string[];
  /** Accepted edits that cannot apply to a running process (the listening address, the watcher). */
  warnings: string[];
}

/** Server settings bound at start: a reload accepts a change to them but says it waits for a restart. */
const RESTART_ONLY = ['host', 'port', 'watch'] as const;

interface Slot {
  runtime: Runtime;
  pins: number;
  retired: boolean;
}

export class RuntimeRef {
  private slot: Slot | null = null;
  private readonly slots = new Map<Runtime, Slot>();
  private generation = 0;
  private reloading: Promise<ReloadStatus> | null = null;
  private pendingTrigger: string | null = null;
  private watcher: FSWatcher | null = null;
  private debounce: NodeJS.Timeout | null = null;
  private closed = false;
  readonly shared = createSharedPools();
  /** Sticky conversations and steering controllers, kept across reloads. */
  readonly routing = new RoutingState();
  lastReload: ReloadStatus | null = null;
  reloadCount = { ok: 0, error: 0 };
  /** Told of every load attempt, and of every runtime swapped in (metrics, online learning). */
  private readonly reloadListeners: Array<(status: ReloadStatus, runtime: Runtime | null) => void> = [];

  onReload(fn: (status: ReloadStatus, runtime: Runtime | null) => void): void {
    this.reloadListeners.push(fn);
  }

  /** Work a new runtime needs before it serves (online learning replays its rows); awaited before the swap. */
  private readonly preparers: Array<(runtime: Runtime) => Promise<void>> = [];
  onPrepare(fn: (runtime: Runtime) => Promise<void>): void {
    this.preparers.push(fn);
  }

  constructor(
    readonly file: string,
    private readonly log: Logger,
  ) {}

  get current(): Runtime | null {
    return this.slot?.runtime ?? null;
  }

  /** Pins the current runtime for one request; call the returned function exactly once when it ends. */
  pin(): { runtime: Runtime; release: () => void } | null {
    const slot = this.slot;
    if (!slot) return null;
    slot.pins++;
    let released = false;
    return {
      runtime: slot.runtime,
      release: () => {
        if (released) return;
        released = true;
        if (--slot.pins === 0 && slot.retired) void this.disposeSlot(slot);
      },
    };
  }

  /** Loads the file and swaps it in; on any error keeps the last good runtime and records why. */
  reload(trigger: string): Promise<ReloadStatus> {
    if (this.reloading) {
      // Coalesce: one more reload after the running one, so the latest edit always wins.
      this.pendingTrigger = trigger;
      return this.reloading;
    }
    this.reloading = this.doReload(trigger).finally(() => {
      this.reloading = null;
      const next = this.pendingTrigger;
      this.pendingTrigger = null;
      if (next !== null && !this.closed) void this.reload(next);
    });
    return this.reloading;
  }

  private async doReload(trigger: string): Promise<ReloadStatus> {
    const generation = this.generation + 1;
    let status: ReloadStatus;
    try {
      const loaded = await loadConfigFile(this.file);
      const runtime = await compileRuntime(loaded, this.shared, generation, {
        onScoringEvent: (message, err) => this.log.warn({ generation, ...(err === undefined ? {} : { err }) }, message),
      });
      try {
        for (const prepare of this.preparers) await prepare(runtime);
      } catch (err) {
        await runtime.dispose();
        throw err;
      }
      if (this.closed) {
        await runtime.dispose();
        throw new Error('gateway is shutting down');
      }
      this.generation = generation;
      const previous = this.slot;
      const warnings: string[] = [];
      if (previous) {
        for (const k of RESTART_ONLY) {
          const was = previous.runtime.config.server[k];
          const now = runtime.config.server[k];
          if (was !== now) warnings.push(`server.${k} changed (${String(was)} -> ${String(now)}): it takes effect at the next restart`);
        }
        // Telemetry lives for the process (connections, counters): its settings wait for a restart.
        if (JSON.stringify(previous.runtime.config.telemetry) !== JSON.stringify(runtime.config.telemetry)) {
          warnings.push('telemetry changed: it takes effect at the next restart');
        }
      }
      this.slot = { runtime, pins: 0, retired: false };
      this.slots.set(runtime, this.slot);
      if (previous) {
        previous.retired = true;
        if (previous.pins === 0) void this.disposeSlot(previous);
      }
      status = { ok: true, at: new Date().toISOString(), trigger, generation, errors: [], warnings };
      this.reloadCount.ok++;
      this.log.info({ trigger, generation, file: this.file }, 'config loaded');
      for (const w of warnings) this.log.warn({ trigger, generation, file: this.file }, w);
    } catch (err) {
      // A config error can quote the file: secrets pasted in the wrong place are masked before anyone sees it.
      const raw = err instanceof ConfigErrors ? err.problems.map((p) => p.message) : [(err as Error).message];
      const errors = redactSecrets(raw, secretValues(this.current?.config));
      status = { ok: false, at: new Date().toISOString(), trigger, generation: this.generation, errors, warnings: [] };
      this.reloadCount.error++;
      this.log.error(
        { trigger, file: this.file, errors },
        this.slot ? 'config reload failed; keeping the last good config' : 'config load failed',
      );
    }
    this.lastReload = status;
    for (const fn of this.reloadListeners) {
      try {
        fn(status, status.ok ? this.current : null);
      } catch (err) {
        this.log.warn({ err }, 'a reload listener failed');
      }
    }
    return status;
  }

  private async disposeSlot(slot: Slot): Promise<void> {
    this.slots.delete(slot.runtime);
    await slot.runtime.dispose().catch((err: unknown) => this.log.warn({ err }, 'disposing an old config failed'));
  }

  /** Watches the folder (editors often replace the file by rename) and reloads on change, debounced. */
  watch(debounceMs = 150): void {
    if (this.watcher) return;
    const name = basename(this.file);
    this.watcher = watch(dirname(this.file), { persistent: false }, (_event, changed) => {
      if (changed !== null && changed !== name) return;
      if (this.debounce) clearTimeout(this.debounce);
      this.debounce = setTimeout(() => void this.reload('file-change'), debounceMs);
    });
    this.watcher.on('error', (err) => this.log.warn({ err }, 'config watcher failed; use POST /admin/reload'));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watcher?.close();
    if (this.debounce) clearTimeout(this.debounce);
    await this.reloading?.catch(() => undefined);
    const slots = [...this.slots.values()];
    this.slot = null;
    await Promise.allSettled(slots.map((s) => this.disposeSlot(s)));
    await this.shared.pools.closeAll();
    await this.shared.embedders.closeAll();
  }
}
