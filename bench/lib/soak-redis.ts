// The soak bench's own redis-server, which it kills and starts again on the same port mid-run. Unlike
// servers.ts's startRedis it persists: append-only file with `appendfsync always` in a temp dir, so
// every write Redis acknowledged survives a SIGKILL (it writes and fsyncs the AOF before it replies), and
// a record missing after the restart was lost by the gateway, not by Redis.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, redisCommand, spawnServer, type ServerProc } from './servers.js';

export interface SoakRedis {
  port: number;
  url: string;
  /** The running server (replaced by restart()). */
  proc(): ServerProc;
  /** SIGKILL (or SIGTERM), `downMs` with nothing listening, then the same server on the same port and files. */
  restart(downMs: number, signal: 'SIGKILL' | 'SIGTERM'): Promise<{ downMs: number; readyMs: number }>;
  stop(): Promise<void>;
}

export async function startSoakRedis(): Promise<SoakRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'signalman-soak-redis-'));
  const spawnIt = async (): Promise<ServerProc> => {
    try {
      return await spawnServer({
        name: 'redis-server',
        command: process.env.REDIS_SERVER ?? 'redis-server',
        args: ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always'],
        port,
        // PING answers LOADING until the append-only file is read back.
        readyPath: async () => (await redisCommand(port, ['PING'])) === 'PONG',
      });
    } catch (err) {
      if (/ENOENT/.test((err as Error).message)) {
        throw new Error('redis-server is not on PATH (set REDIS_SERVER=/path/to/redis-server, or apt-get install redis-server)', {
          cause: err,
        });
      }
      throw err;
    }
  };
  let current = await spawnIt();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    proc: () => current,
    async restart(downMs, signal) {
      const t0 = performance.now();
      process.kill(current.pid, signal);
      await current.stop(); // waits for the exit (a SIGTERM to a process already gone does nothing)
      const wait = downMs - (performance.now() - t0);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const down = performance.now() - t0;
      current = await spawnIt();
      return { downMs: down, readyMs: performance.now() - t0 };
    },
    async stop() {
      await current.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
