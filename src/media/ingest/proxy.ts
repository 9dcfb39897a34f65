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
 *   spawn('yt-dlp', args, { env: { http_proxy: proxy.url, ... } });
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
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http';
import net, { type LookupFunction, type Socket } from 'node:net';
import type { Config } from '../../config/config.ts';
import { DownloadError } from './download-errors.ts';
import { bareHost, checkUrl, createGuardedLookup, type Resolver, type SsrfPolicy } from './ssrf.ts';

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

// RFC 9110 §7.6.1: "Intermediaries MUST parse a received Connection header field before a message is
// forwarded and, for each connection-option in this field, remove any header or trailer field(s) from the
// message with the same name as the connection-option, and then remove the Connection header field itself
// [...]. Furthermore, intermediaries SHOULD remove or replace fields that are known to require removal
// before forwarding, whether or not they appear as a connection-option, after applying those fields'
// semantics. This includes but is not limited to: Proxy-Connection [...], Keep-Alive [...], TE [...],
// Transfer-Encoding [...], Upgrade". Proxy-Authorization is ours (RFC 9110 §11.7.2: it "is consumed by
// the first inbound proxy that was expecting to receive credentials"); Host is set from the target.
const HOP_BY_HOP = new Set([
  'connection',
  'proxy-connection',
  'keep-alive',
  'te',
  'transfer-encoding',
  'upgrade',
  'trailer',
  'proxy-authorization',
  'proxy-authenticate',
]);

// CONNECT's request-target is the authority-form, "only the host and port number of the tunnel
// destination, separated by a colon" (RFC 9110 §9.3.6): a name or IPv4 literal, or an IPv6 literal in
// brackets, and a port. Nothing else (no userinfo, path or query) is accepted.
const AUTHORITY = /^(\[[0-9a-fA-F:.]+\]|[^\s/?#@[\]:]+):([0-9]{1,5})$/;

export class GuardedProxy {
  readonly #options: ProxyOptions;
  readonly #lookup: LookupFunction;
  readonly #server: http.Server;
  readonly #credential: Buffer;
  readonly #secret: string;
  readonly #sockets = new Set<Socket>();
  readonly #stats: ProxyStats = {
    refused: 0,
    lastRefusal: undefined,
    bytes: 0,
    overLimit: false,
    connections: 0,
  };
  #open = 0;
  #port = 0;

  private constructor(options: ProxyOptions) {
    this.#options = options;
    this.#lookup = createGuardedLookup(options.policy, options.resolver);
    this.#secret = randomBytes(24).toString('hex');
    this.#credential = Buffer.from(`${USER}:${this.#secret}`);
    this.#server = http.createServer();
    this.#server.on('connection', (socket: Socket) => this.#track(socket));
    this.#server.on('request', (req, res) => this.#forward(req, res));
    this.#server.on('connect', (req, socket: Socket, head) => this.#tunnel(req, socket, head));
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
    proxy.#port = (proxy.#server.address() as net.AddressInfo).port;
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
    return { ...this.#stats };
  }

  /** Stops listening and destroys every socket, client and upstream alike. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    this.#server.closeAllConnections();
    await closed;
  }

  // -------------------------------------------------------------------------------------------------
  // Absolute-form requests

  #forward(req: IncomingMessage, res: ServerResponse): void {
    if (!this.#authorized(req.headers['proxy-authorization'])) {
      res.writeHead(407, { 'proxy-authenticate': 'Basic realm="conveyor"', 'content-type': TEXT });
      res.end('proxy authentication required\n');
      return;
    }
    let url: URL;
    try {
      url = new URL(req.url ?? '');
    } catch {
      answer(res, 400, 'only absolute-form requests (GET http://host/path) and CONNECT are served');
      return;
    }
    // Refusals name the origin only: a path or query may hold a token that has no place in a job record.
    const target = url.protocol === 'http:' ? this.#check(url.href, url.host) : undefined;
    if (target === undefined) {
      if (url.protocol !== 'http:') this.#refuse(`${url.protocol} ${url.host}: scheme not allowed`);
      answer(res, 403, `refused: ${this.#stats.lastRefusal}`);
      return;
    }
    const busy = this.#busy();
    if (busy !== undefined) {
      answer(res, busy.status, busy.text);
      return;
    }
    const headers = forwardHeaders(req.rawHeaders);
    // RFC 9112 §3.2.2: "When a proxy receives a request with an absolute-form of request-target, the
    // proxy MUST ignore the received Host header field (if any) and instead replace it with the host
    // information of the request-target."
    headers.push('Host', target.host);
    this.#opened();
    const upstream = http.request(target, {
      method: req.method,
      headers,
      setHost: false,
      agent: false, // a fresh socket, resolved through the guarded lookup; never a pooled one
      lookup: this.#lookup,
    });
    const fail = (status: number, text: string) => {
      if (!res.headersSent) answer(res, status, text);
      else res.destroy();
    };
    const timer = setTimeout(
      () => upstream.destroy(new TimeoutError('connect')),
      this.#options.connectTimeoutMs,
    );
    upstream.once('close', () => {
      clearTimeout(timer);
      this.#closed();
    });
    upstream.once('socket', (socket: Socket) => {
      this.#track(socket);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.setTimeout(this.#options.idleTimeoutMs, () => upstream.destroy(new TimeoutError('idle')));
      });
    });
    upstream.on('error', (err) => {
      clearTimeout(timer);
      const refused = this.#refusalOf(err, target.host);
      if (refused) fail(403, `refused: ${refused}`);
      else fail(err instanceof TimeoutError ? 504 : 502, `upstream: ${err.message}`);
    });
    upstream.once('response', (upRes) => {
      clearTimeout(timer);
      res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, forwardHeaders(upRes.rawHeaders));
      upRes.on('data', (chunk: Buffer) => this.#count(chunk.length));
      upRes.on('error', () => res.destroy());
      upRes.pipe(res);
    });
    req.on('data', (chunk: Buffer) => this.#count(chunk.length));
    req.pipe(upstream);
    // The client went away before the answer was complete: nothing is waiting for the origin any more.
    res.once('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
  }

  // -------------------------------------------------------------------------------------------------
  // CONNECT tunnels

  #tunnel(req: IncomingMessage, client: Socket, head: Buffer): void {
    // The HTTP server has handed the socket over: its errors (a client that resets) are ours to absorb.
    client.on('error', () => client.destroy());
    if (!this.#authorized(req.headers['proxy-authorization'])) {
      answerRaw(
        client,
        407,
        'proxy authentication required',
        'Proxy-Authenticate: Basic realm="conveyor"\r\n',
      );
      return;
    }
    const authority = AUTHORITY.exec(req.url ?? '');
    if (authority === null || Number(authority[2]) === 0 || Number(authority[2]) > 65535) {
      answerRaw(client, 400, 'CONNECT needs host:port');
      return;
    }
    // The authority is judged as an https URL's, so the URL parser canonicalises the host (every IPv4
    // spelling, IDNA) exactly as for ingest, and the connection goes to that canonical host.
    const target = this.#check(`https://${req.url}/`, req.url!);
    if (target === undefined) {
      answerRaw(client, 403, `refused: ${this.#stats.lastRefusal}`);
      return;
    }
    const busy = this.#busy();
    if (busy !== undefined) {
      answerRaw(client, busy.status, busy.text);
      return;
    }
    this.#opened();
    const upstream = net.connect({
      host: bareHost(target),
      port: Number(authority[2]),
      lookup: this.#lookup,
    });
    this.#track(upstream);
    upstream.once('close', () => this.#closed());
    // A client gone (before or after the tunnel is up) leaves nobody to deliver to.
    client.once('close', () => upstream.destroy());
    const timer = setTimeout(
      () => upstream.destroy(new TimeoutError('connect')),
      this.#options.connectTimeoutMs,
    );
    const onError = (err: Error) => {
      clearTimeout(timer);
      const refused = this.#refusalOf(err, req.url!);
      if (refused) answerRaw(client, 403, `refused: ${refused}`);
      else answerRaw(client, err instanceof TimeoutError ? 504 : 502, `upstream: ${err.message}`);
    };
    upstream.once('error', onError);
    upstream.once('close', () => clearTimeout(timer));
    upstream.once('connect', () => {
      clearTimeout(timer);
      upstream.off('error', onError);
      // RFC 9110 §9.3.6: "A server MUST NOT send any Transfer-Encoding or Content-Length header fields
      // in a 2xx (Successful) response to CONNECT."
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) {
        this.#count(head.length);
        upstream.write(head);
      }
      const idle = () => {
        client.destroy();
        upstream.destroy();
      };
      for (const [from, to] of [
        [client, upstream],
        [upstream, client],
      ] as const) {
        from.setTimeout(this.#options.idleTimeoutMs, idle);
        from.on('data', (chunk: Buffer) => this.#count(chunk.length));
        from.on('error', idle);
        from.pipe(to);
      }
      // The origin closing ends the client's side once what it sent is flushed (pipe's end()).
    });
  }

  // -------------------------------------------------------------------------------------------------
  // Checks and accounting

  #authorized(header: string | undefined): boolean {
    const match = /^basic +([A-Za-z0-9+/=]+) *$/i.exec(header ?? '');
    if (match === null) return false;
    const given = Buffer.from(match[1]!, 'base64');
    return given.length === this.#credential.length && timingSafeEqual(given, this.#credential);
  }

  /** checkUrl on the target: the URL when it passes, undefined (and the refusal recorded) otherwise. */
  #check(href: string, shown: string): URL | undefined {
    try {
      return checkUrl(href, this.#options.policy);
    } catch (err) {
      if (!(err instanceof DownloadError)) throw err;
      this.#refuse(`${shown}: ${err.message}`);
      return undefined;
    }
  }

  /** The guarded lookup's refusal, recorded; undefined for any other connection failure. */
  #refusalOf(err: Error, shown: string): string | undefined {
    if (!(err instanceof DownloadError) || err.code !== 'ssrf_forbidden') return undefined;
    this.#refuse(`${shown}: ${err.message}`);
    return this.#stats.lastRefusal;
  }

  #refuse(reason: string): void {
    this.#stats.refused++;
    this.#stats.lastRefusal = reason;
  }

  /** Why no upstream connection may be opened now, if so. */
  #busy(): { status: number; text: string } | undefined {
    if (this.#stats.overLimit) return { status: 403, text: 'refused: the byte limit of this run is reached' };
    if (this.#open >= this.#options.maxConnections) {
      return { status: 503, text: `too many connections (${this.#options.maxConnections})` };
    }
    return undefined;
  }

  #opened(): void {
    this.#open++;
    this.#stats.connections++;
  }

  #closed(): void {
    this.#open--;
  }

  #count(bytes: number): void {
    this.#stats.bytes += bytes;
    if (this.#stats.bytes <= this.#options.maxBytes || this.#stats.overLimit) return;
    this.#stats.overLimit = true;
    for (const socket of this.#sockets) socket.destroy();
  }

  #track(socket: Socket): void {
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
  }
}

class TimeoutError extends Error {
  constructor(phase: 'connect' | 'idle') {
    super(`${phase} timeout`);
  }
}

const TEXT = 'text/plain; charset=utf-8';

/** Raw headers (name, value, name, value...) without hop-by-hop fields and those Connection names. */
function forwardHeaders(raw: readonly string[]): string[] {
  const named = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') {
      for (const option of raw[i + 1]!.split(',')) named.add(option.trim().toLowerCase());
    }
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (HOP_BY_HOP.has(name) || named.has(name) || name === 'host') continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

function answer(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': TEXT, connection: 'close' });
  res.end(`${text}\n`);
}

/** An answer written straight to a CONNECT socket, which the HTTP server has handed over. */
function answerRaw(socket: Socket, status: number, text: string, extra = ''): void {
  const body = `${text}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${TEXT}\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n${extra}\r\n${body}`,
  );
}
