// Per-process resource readings from /proc (Linux only): CPU time and resident memory of a server
// process, read by the bench from outside so the server runs unmodified.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let clkTck: number | null = null;

/** Clock ticks per second for /proc/PID/stat times (almost always 100; asked once of getconf). */
export function clockTicks(): number {
  if (clkTck !== null) return clkTck;
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    clkTck = Number.isInteger(n) && n > 0 ? n : 100;
  } catch {
    clkTck = 100;
  }
  return clkTck;
}

/** utime + stime of `pid` in seconds, or null when /proc is unavailable (non-Linux) or the process is gone. */
export function cpuSeconds(pid: number): number | null {
  return statCpu(`/proc/${pid}/stat`);
}

/** The same for the process's main thread only (its thread id is the pid): a Node server's event loop. */
export function mainThreadCpuSeconds(pid: number): number | null {
  return statCpu(`/proc/${pid}/task/${pid}/stat`);
}

function statCpu(file: string): number | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may contain spaces and ')': fields are counted after the last ')'.
  const after = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // after[0] is field 3 (state), so utime (field 14) is after[11] and stime (field 15) after[12].
  const utime = Number(after[11]);
  const stime = Number(after[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return (utime + stime) / clockTicks();
}

/** VmRSS of `pid` in bytes, or null when unavailable. */
export function rssBytes(pid: number): number | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(text);
  return m ? Number(m[1]) * 1024 : null;
}

/** Busy CPU seconds of the whole machine (all cores: /proc/stat minus idle and iowait), or null off Linux. */
export function machineBusySeconds(): number | null {
  let text: string;
  try {
    text = readFileSync('/proc/stat', 'utf8');
  } catch {
    return null;
  }
  // "cpu  user nice system idle iowait irq softirq steal ..." in clock ticks; guest time is inside user.
  const f = text.slice(0, text.indexOf('\n')).trim().split(/\s+/).slice(1, 9).map(Number);
  if (f.length < 8 || f.some((x) => !Number.isFinite(x))) return null;
  const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!;
  return busy / clockTicks();
}
