// The named stages of a request's life, published on node:diagnostics_channel (how undici and fastify
// report theirs). Publishing costs nothing while a stage has no subscriber, so the pipeline checks
// `hasSubscribers` before it builds a message. Channels are per gateway instance (`scope`), so two
// gateways in one process (tests, benchmarks) never see each other's requests.
import { channel, type Channel } from 'node:diagnostics_channel';
import type { RequestRecord } from './record.js';

export interface DecisionMessage {
  id: string;
  policy: string;
  chosen: string;
  reason: string;
}
export interface AttemptStartMessage {
  id: string;
  backend: string;
}
export interface AttemptEndMessage {
  id: string;
  backend: string;
  /** Upstream status, null when none came. */
  status: number | null;
  /** Our error code for a failed attempt, null for a success. */
  error: string | null;
  ms: number;
}
export interface FirstByteMessage {
  id: string;
  /** Since the request arrived. */
  ms: number;
}

/** A typed channel: `publish` only where `hasSubscribers`, `subscribe`/`unsubscribe` for sinks. */
export class Stage<T> {
  private readonly ch: Channel;
  constructor(readonly name: string) {
    this.ch = channel(name);
  }
  get hasSubscribers(): boolean {
    return this.ch.hasSubscribers;
  }
  publish(msg: T): void {
    this.ch.publish(msg);
  }
  subscribe(fn: (msg: T) => void): void {
    this.ch.subscribe(fn as (msg: unknown, name: string | symbol) => void);
  }
  unsubscribe(fn: (msg: T) => void): void {
    this.ch.unsubscribe(fn as (msg: unknown, name: string | symbol) => void);
  }
}

let instances = 0;

export class Stages {
  readonly decision: Stage<DecisionMessage>;
  readonly attemptStart: Stage<AttemptStartMessage>;
  readonly attemptEnd: Stage<AttemptEndMessage>;
  readonly firstByte: Stage<FirstByteMessage>;
  /** The complete record, once per client request, after the response ended (or failed, or was aborted). */
  readonly finish: Stage<RequestRecord>;

  /** The first instance in a process uses the plain names (signalman:finish, …) for outside subscribers. */
  constructor(readonly scope = instances++ === 0 ? '' : `#${instances - 1}`) {
    const n = (stage: string) => `signalman:${stage}${scope}`;
    this.decision = new Stage(n('decision'));
    this.attemptStart = new Stage(n('attempt-start'));
    this.attemptEnd = new Stage(n('attempt-end'));
    this.firstByte = new Stage(n('first-byte'));
    this.finish = new Stage(n('finish'));
  }
}
