/**
 * Guarded forward proxy
 * =====================
 *
 * yt-dlp (src/media/video/ytdlp.ts) fetches pages, manifests and media itself, from URLs a video page
 * chooses. It is pointed at this proxy, which holds every one of its connections to ingest's SSRF rules
 * (ssrf.ts): the target's host and port pass checkUrl against the same SsrfPolicy, and a name is resolved
 * by the guarded lookup, which refuses it when any address is forbidden and hands back the checked
 * addresses, to which the connection then goes (Node never resolves a second time). A refused target gets
 * 403 and a short text body, nothing is connected, and the refusal is counted with its reason, so the job
 * can say that the video site pointed at a forbidden address.
 *
 *   const proxy = await GuardedProxy.start(options);   // 127.0.0.1, a free port, a fresh credential
 *   runTool('yt-dlp', args, { env: { http_proxy: proxy.url, ... }, ... });
 *   ...; proxy.stats;                                 // refusals, bytes, whether the byte cap was hit
 *   await proxy.close();                              // every socket, both sides, is destroyed
 *
 * It speaks the two forms a forward proxy receives (RFC 9112 §3.2.2, §3.2.3): an absolute-form request
 * (`GET http://host/path`), forwarded on a fresh connection with both bodies streamed, and `CONNECT
 * host:port`, answered with a blind tunnel (for https, whose bytes it cannot read). Only `http:` is
 * forwarded in absolute form; `ftp:` and any other scheme are refused like a forbidden address, which is
 * why yt-dlp gets the proxy for ftp too (Python's urllib would otherwise fetch ftp:// directly).
 *
 * One proxy per yt-dlp run, not one shared by all: its credential, counters and byte cap are that run's,
 * so a refusal or an exhausted cap is attributed to the job that caused it without any bookkeeping, and
 * closing it at the end of the run cuts whatever the run (or a child it left behind) still holds open.
 * A listening socket per run costs next to nothing beside a yt-dlp process.
 *
 * The random credential (`Proxy-Authorization: Basic`, 407 without it) keeps other local processes from
 * using a proxy that reaches whatever the policy allows. The proxy listens on loopback only.
 *
 * This file is the proxy's life (start, credential, close) and its policy from the settings; the two
 * request forms are proxy-forward.ts and proxy-tunnel.ts, and what they share (the checks, counters and
 * caps) is proxy-guard.ts.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Config } from '../../config/config.ts';
import { forwardRequest } from './proxy-forward.ts';
import { ProxyGuard, type ProxyOptions, type ProxyStats } from './proxy-guard.ts';
import { answerRaw, openTunnel } from './proxy-tunnel.ts';
import type { SsrfPolicy } from './ssrf.ts';

export type { ProxyOptions, ProxyStats } from './proxy-guard.ts';

/** The SsrfPolicy of remote ingest, from the settings: the proxy applies exactly these rules. */
export function ingestPolicy(config: Config): SsrfPolicy {
  return {
    allowAddresses: config.ingestAllowAddresses ?? [],
    denyHosts: config.ingestDenyHosts,
    ...(config.ingestAllowHosts ? { allowHosts: config.ingestAllowHosts } : {}),
    ...(config.ingestAllowedPorts ? { allowedPorts: config.ingestAllowedPorts } : {}),
  };
}

const USER = 'conveyor';

export class GuardedProxy {
  readonly #guard: ProxyGuard;
  readonly #server: http.Server;
  readonly #secret: string;
  #port = 0;

  private constructor(options: ProxyOptions) {
    this.#secret = randomBytes(24).toString('hex');
    this.#guard = new ProxyGuard(options, Buffer.from(`${USER}:${this.#secret}`));
    this.#server = http.createServer();
    this.#server.on('connection', (socket: Socket) => this.#guard.track(socket));
    this.#server.on('request', (req, res) => forwardRequest(this.#guard, req, res));
    this.#server.on('connect', (req, socket: Socket, head) => openTunnel(this.#guard, req, socket, head));
    // An Upgrade request in absolute form (a plain ws:// WebSocket) would need a tunnel of its own;
    // yt-dlp does not send one through an HTTP proxy, so it is refused rather than half-supported.
    this.#server.on('upgrade', (_req, socket: Socket) => {
      socket.on('error', () => socket.destroy());
      answerRaw(socket, 501, 'upgrade not supported');
    });
  }

  /** Starts a proxy on 127.0.0.1 and a free port, with a credential of its own. */
  static async start(options: ProxyOptions): Promise<GuardedProxy> {
    for (const key of ['connectTimeoutMs', 'idleTimeoutMs', 'maxConnections', 'maxBytes'] as const) {
      if (!Number.isSafeInteger(options[key]) || options[key] <= 0)
        throw new RangeError(`${key} must be a positive integer`);
    }
    const proxy = new GuardedProxy(options);
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once('error', reject);
      proxy.#server.listen(0, '127.0.0.1', () => resolve());
    });
    proxy.#port = (proxy.#server.address() as AddressInfo).port;
    return proxy;
  }

  get port(): number {
    return this.#port;
  }

  /** The proxy URL with its credential, as http_proxy and the like take it. */
  get url(): string {
    return `http://${USER}:${this.#secret}@127.0.0.1:${this.#port}`;
  }

  /** A copy of the counters. */
  get stats(): ProxyStats {
    return this.#guard.stats;
  }

  /** Stops listening and destroys every socket, client and upstream alike. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#guard.destroyAll();
    this.#server.closeAllConnections();
    await closed;
  }
}
