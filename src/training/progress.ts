import cliProgress from 'cli-progress';

// Long steps (embedding thousands of prompts, training, sweeps) show a bar with an ETA on a terminal
// and stay silent in CI or when stderr is piped, so logs hold results, not carriage returns.

export interface Progress {
  /** Sets the number of units done so far. */
  update(done: number): void;
  /** Finishes the bar (prints nothing when quiet). */
  stop(): void;
}

export interface ProgressOptions {
  /** Force on (true) or off (false); default: on only when stderr is a TTY and CI is not set. */
  enabled?: boolean;
  stream?: NodeJS.WriteStream;
}

export function progressEnabled(stream: NodeJS.WriteStream = process.stderr): boolean {
  const ci = process.env.CI;
  return stream.isTTY === true && (ci === undefined || ci === '' || ci === 'false' || ci === '0');
}

const silent: Progress = { update: () => {}, stop: () => {} };

/** A progress bar over `total` units labelled `label`; a no-op when not enabled. */
export function startProgress(label: string, total: number, opts: ProgressOptions = {}): Progress {
  const stream = opts.stream ?? process.stderr;
  if (!(opts.enabled ?? progressEnabled(stream)) || total <= 0) return silent;
  const bar = new cliProgress.SingleBar(
    {
      format: `${label.padEnd(28)} [{bar}] {percentage}% | {value}/{total} | ETA {eta_formatted}`,
      stream,
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0);
  let stopped = false;
  return {
    update: (done) => {
      if (!stopped) bar.update(Math.min(done, total));
    },
    stop: () => {
      if (stopped) return;
      stopped = true;
      bar.stop();
    },
  };
}
