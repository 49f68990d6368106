// What the numbers were measured on: printed above every table and stored in every JSON result.
import { execFileSync } from 'node:child_process';
import { cpus, loadavg, totalmem, type as osType, release } from 'node:os';

export interface Machine {
  cpu: string;
  cores: number;
  memGiB: number;
  os: string;
  node: string;
  /** git HEAD, or null when the tree has no commit yet. */
  commit: string | null;
  /** True when tracked or untracked files differ from the commit: the numbers are for the working tree. */
  dirty: boolean | null;
  /** 1-minute load average at the start: a busy machine inflates tails and shrinks rates. */
  loadAvg1: number;
}

function git(args: string[]): string | null {
  try {
    return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

export function machine(): Machine {
  const list = cpus();
  const status = git(['status', '--porcelain']);
  return {
    cpu: list[0]?.model.trim() ?? 'unknown',
    cores: list.length,
    memGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: `${osType()} ${release()}`,
    node: process.version,
    commit: git(['rev-parse', '--short=12', 'HEAD']),
    dirty: status === null ? null : status.length > 0,
    loadAvg1: Math.round((loadavg()[0] ?? 0) * 100) / 100,
  };
}

export function describeMachine(m: Machine): string {
  const commit = m.commit === null ? 'no commit' : `${m.commit}${m.dirty ? ' (dirty tree)' : ''}`;
  return `${m.cpu} x${m.cores}, ${m.memGiB} GiB, ${m.os}, node ${m.node}, commit ${commit}, load ${m.loadAvg1}`;
}

/** File-name-safe UTC timestamp, e.g. 20261125-221800. */
export function stamp(d = new Date()): string {
  return d.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
}
