// One factory for every Redis connection Signalman opens (telemetry, feedback, limits), so they all accept
// the same URL forms:
//
//   redis://[user:pass@]host[:6379][/db]                         one server (ioredis parses it)
//   rediss://…                                                    the same over TLS
//   redis+cluster://[user:pass@]host:port,host:port[,…]           Redis Cluster: seed nodes (default port 6379)
//   rediss+cluster://…                                            Cluster over TLS
//   redis+sentinel://[user:pass@]host:port,host:port/<master>[/db][?sentinel_password=…&sentinel_username=…]
//                                                                 Sentinel: sentinels (default port 26379) and the
//                                                                 master group name; user:pass is the master's
//   rediss+sentinel://…                                           Sentinel, TLS to master and sentinels
//
// WHATWG URL cannot parse a comma-separated host list, hence the small parser; the standalone forms are
// left to ioredis so every option it reads from a URL keeps working.
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';

export type RedisClient = Redis | Cluster;

interface HostPort {
  host: string;
  port: number;
}

export type ParsedRedisUrl =
  | { kind: 'standalone'; url: string }
  | { kind: 'cluster'; tls: boolean; nodes: HostPort[]; username?: string; password?: string }
  | {
      kind: 'sentinel';
      tls: boolean;
      sentinels: HostPort[];
      name: string;
      db?: number;
      username?: string;
      password?: string;
      sentinelUsername?: string;
      sentinelPassword?: string;
    };

const MULTI = /^(rediss?)\+(cluster|sentinel):\/\/(?:([^@/]*)@)?([^/?#]+)(\/[^?#]*)?(\?[^#]*)?$/;

function hostPort(s: string, defaultPort: number, url: string): HostPort {
  // [v6]:port, host:port or host
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(s.trim());
  if (m === null) throw new Error(`redis url '${redact(url)}': cannot read host '${s}'`);
  return { host: (m[1] ?? m[2]) as string, port: m[3] === undefined ? defaultPort : Number(m[3]) };
}

/** The URL with any password replaced, for error messages and logs. */
export function redact(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

export function parseRedisUrl(url: string): ParsedRedisUrl {
  const m = MULTI.exec(url);
  if (m === null) {
    if (!/^rediss?:\/\//.test(url)) {
      throw new Error(`redis url '${redact(url)}': use redis://, rediss://, redis+cluster:// or redis+sentinel://`);
    }
    return { kind: 'standalone', url };
  }
  const [, scheme, kind, userinfo, hosts, path, query] = m;
  const tls = scheme === 'rediss';
  let username: string | undefined;
  let password: string | undefined;
  if (userinfo !== undefined && userinfo !== '') {
    const colon = userinfo.indexOf(':');
    const user = decodeURIComponent(colon < 0 ? userinfo : userinfo.slice(0, colon));
    if (user !== '') username = user;
    if (colon >= 0) password = decodeURIComponent(userinfo.slice(colon + 1));
  }
  const auth = { ...(username === undefined ? {} : { username }), ...(password === undefined ? {} : { password }) };
  const list = (hosts as string).split(',').filter((h) => h !== '');
  if (kind === 'cluster') {
    return { kind: 'cluster', tls, nodes: list.map((h) => hostPort(h, 6379, url)), ...auth };
  }
  const parts = (path ?? '').split('/').filter((p) => p !== '');
  const name = parts[0];
  if (name === undefined)
    throw new Error(`redis url '${redact(url)}': a sentinel url names the master: redis+sentinel://host:26379/mymaster`);
  const params = new URLSearchParams(query ?? '');
  const sUser = params.get('sentinel_username');
  const sPass = params.get('sentinel_password');
  return {
    kind: 'sentinel',
    tls,
    sentinels: list.map((h) => hostPort(h, 26379, url)),
    name: decodeURIComponent(name),
    ...(parts[1] === undefined ? {} : { db: Number(parts[1]) }),
    ...auth,
    ...(sUser === null ? {} : { sentinelUsername: sUser }),
    ...(sPass === null ? {} : { sentinelPassword: sPass }),
  };
}

/**
 * A client for `url` with `opts` (ioredis' own options). For a cluster, the per-node options go to
 * `redisOptions` and `retryStrategy` becomes `clusterRetryStrategy`, so callers write one option set.
 */
export function createRedisClient(url: string, opts: RedisOptions = {}): RedisClient {
  const p = parseRedisUrl(url);
  if (p.kind === 'standalone') return new Redis(url, opts);
  if (p.kind === 'sentinel') {
    return new Redis({
      ...opts,
      sentinels: p.sentinels,
      name: p.name,
      ...(p.db === undefined ? {} : { db: p.db }),
      ...(p.username === undefined ? {} : { username: p.username }),
      ...(p.password === undefined ? {} : { password: p.password }),
      ...(p.sentinelUsername === undefined ? {} : { sentinelUsername: p.sentinelUsername }),
      ...(p.sentinelPassword === undefined ? {} : { sentinelPassword: p.sentinelPassword }),
      ...(p.tls ? { tls: {}, sentinelTLS: {}, enableTLSForSentinelMode: true } : {}),
    });
  }
  const {
    retryStrategy,
    enableOfflineQueue,
    lazyConnect,
    enableReadyCheck,
    port: _port,
    host: _host,
    path: _path,
    sentinels: _s,
    readOnly: _r,
    ...node
  } = opts;
  const clusterOpts: ClusterOptions = {
    redisOptions: {
      ...node,
      ...(p.username === undefined ? {} : { username: p.username }),
      ...(p.password === undefined ? {} : { password: p.password }),
      ...(p.tls ? { tls: {} } : {}),
    },
    ...(retryStrategy == null ? {} : { clusterRetryStrategy: (times: number) => retryStrategy(times) }),
    ...(enableOfflineQueue === undefined ? {} : { enableOfflineQueue }),
    ...(lazyConnect === undefined ? {} : { lazyConnect }),
    ...(enableReadyCheck === undefined ? {} : { enableReadyCheck }),
  };
  return new Cluster(p.nodes, clusterOpts);
}
