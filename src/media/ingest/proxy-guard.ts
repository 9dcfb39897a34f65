/**
 * What the guarded proxy's two ways of connecting (proxy-forward.ts, proxy-tunnel.ts) share: the
 * credential check, the address check of a target against ingest's SSRF rules, the counters, the
 * connection limit and the byte cap, and the sockets to cut when the cap is hit or the proxy closes.
 * One ProxyGuard per proxy, so one per yt-dlp run (see proxy.ts for why).
 */
import { timingSafeEqual } from 'node:crypto';
import type { LookupFunction, Socket } from 'node:net';
import { DownloadError } from './download-errors.ts';
import { checkUrl, createGuardedLookup, type Resolver, type SsrfPolicy } from './ssrf.ts';

export interface ProxyOptions {
  policy: SsrfPolicy;
  /** Name resolution; the system resolver by default. */
  resolver?: Resolver;
  /** DNS and TCP of one upstream connection. */
  connectTimeoutMs: number;
  /** Longest silence of either side of a connection before both are closed. */
  idleTimeoutMs: number;
  /** Upstream connections (tunnels and forwarded requests) open at once; more are answered 503. */
  maxConnections: number;
  /** Bytes moved through the proxy, both directions, before every connection is cut. */
  maxBytes: number;
}

export interface ProxyStats {
  /** Targets refused by policy (address, host, port or scheme). */
  refused: number;
  /** Why the last one was refused, e.g. "127.0.0.2:8080: destination 127.0.0.2 is forbidden: loopback". */
  lastRefusal: string | undefined;
  /** Bytes relayed, both directions, bodies and tunnelled bytes only. */
  bytes: number;
  /** The byte cap was reached: every connection was cut and later ones are refused. */
  overLimit: boolean;
  /** Upstream connections attempted after the checks passed. */
  connections: number;
}

/** An upstream connection that took longer than connectTimeoutMs, or fell silent for idleTimeoutMs. */
export class TimeoutError extends Error {
  constructor(phase: 'connect' | 'idle') {
    super(`${phase} timeout`);
  }
}

export const TEXT = 'text/plain; charset=utf-8';

export class ProxyGuard {
  readonly options: ProxyOptions;
  /** The guarded lookup every upstream connection resolves through. */
  readonly lookup: LookupFunction;
  readonly #credential: Buffer;
  readonly #sockets = new Set<Socket>();
  readonly #stats: ProxyStats = {
    refused: 0,
    lastRefusal: undefined,
    bytes: 0,
    overLimit: false,
    connections: 0,
  };
  #open = 0;

  /** `credential` is `user:secret`, as a Basic Proxy-Authorization carries it. */
  constructor(options: ProxyOptions, credential: Buffer) {
    this.options = options;
    this.lookup = createGuardedLookup(options.policy, options.resolver);
    this.#credential = credential;
  }

  /** A copy of the counters. */
  get stats(): ProxyStats {
    return { ...this.#stats };
  }

  /** Why the last target was refused. */
  get lastRefusal(): string | undefined {
    return this.#stats.lastRefusal;
  }

  authorized(header: string | undefined): boolean {
    const match = /^basic +([A-Za-z0-9+/=]+) *$/i.exec(header ?? '');
    if (match === null) return false;
    const given = Buffer.from(match[1]!, 'base64');
    return given.length === this.#credential.length && timingSafeEqual(given, this.#credential);
  }

  /** checkUrl on the target: the URL when it passes, undefined (and the refusal recorded) otherwise. */
  check(href: string, shown: string): URL | undefined {
    try {
      return checkUrl(href, this.options.policy);
    } catch (err) {
      if (!(err instanceof DownloadError)) throw err;
      this.refuse(`${shown}: ${err.message}`);
      return undefined;
    }
  }

  /** The guarded lookup's refusal, recorded; undefined for any other connection failure. */
  refusalOf(err: Error, shown: string): string | undefined {
    if (!(err instanceof DownloadError) || err.code !== 'ssrf_forbidden') return undefined;
    this.refuse(`${shown}: ${err.message}`);
    return this.#stats.lastRefusal;
  }

  refuse(reason: string): void {
    this.#stats.refused++;
    this.#stats.lastRefusal = reason;
  }

  /** Why no upstream connection may be opened now, if so. */
  busy(): { status: number; text: string } | undefined {
    if (this.#stats.overLimit) return { status: 403, text: 'refused: the byte limit of this run is reached' };
    if (this.#open >= this.options.maxConnections) {
      return { status: 503, text: `too many connections (${this.options.maxConnections})` };
    }
    return undefined;
  }

  /** An upstream connection is being opened; `closed` when it has closed. */
  opened(): void {
    this.#open++;
    this.#stats.connections++;
  }

  closed(): void {
    this.#open--;
  }

  /** Relayed bytes; past the cap every connection is cut. */
  count(bytes: number): void {
    this.#stats.bytes += bytes;
    if (this.#stats.bytes <= this.options.maxBytes || this.#stats.overLimit) return;
    this.#stats.overLimit = true;
    this.destroyAll();
  }

  /** Keeps the socket, client or upstream, among those destroyAll cuts, until it closes. */
  track(socket: Socket): void {
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
  }

  destroyAll(): void {
    for (const socket of this.#sockets) socket.destroy();
  }
}
