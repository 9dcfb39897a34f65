/**
 * The guarded proxy's CONNECT tunnels (RFC 9110 §9.3.6), for https, whose bytes it cannot read: the
 * authority is checked by the ProxyGuard as an https URL's, connected through the guarded lookup, and
 * then relayed blind in both directions, counted and bounded by the idle timeout.
 */
import { type IncomingMessage, STATUS_CODES } from 'node:http';
import net, { type Socket } from 'node:net';
import { type ProxyGuard, TEXT, TimeoutError } from './proxy-guard.ts';
import { bareHost } from './ssrf.ts';

// CONNECT's request-target is the authority-form, "only the host and port number of the tunnel
// destination, separated by a colon" (RFC 9110 §9.3.6): a name or IPv4 literal, or an IPv6 literal in
// brackets, and a port. Nothing else (no userinfo, path or query) is accepted.
const AUTHORITY = /^(\[[0-9a-fA-F:.]+\]|[^\s/?#@[\]:]+):([0-9]{1,5})$/;

/** Serves one CONNECT request, whose socket the HTTP server has handed over, through `guard`. */
export function openTunnel(guard: ProxyGuard, req: IncomingMessage, client: Socket, head: Buffer): void {
  // The HTTP server has handed the socket over: its errors (a client that resets) are ours to absorb.
  client.on('error', () => client.destroy());
  if (!guard.authorized(req.headers['proxy-authorization'])) {
    answerRaw(client, 407, 'proxy authentication required', 'Proxy-Authenticate: Basic realm="conveyor"\r\n');
    return;
  }
  const authority = AUTHORITY.exec(req.url ?? '');
  if (authority === null || Number(authority[2]) === 0 || Number(authority[2]) > 65535) {
    answerRaw(client, 400, 'CONNECT needs host:port');
    return;
  }
  // The authority is judged as an https URL's, so the URL parser canonicalises the host (every IPv4
  // spelling, IDNA) exactly as for ingest, and the connection goes to that canonical host.
  const target = guard.check(`https://${req.url}/`, req.url!);
  if (target === undefined) {
    answerRaw(client, 403, `refused: ${guard.lastRefusal}`);
    return;
  }
  const busy = guard.busy();
  if (busy !== undefined) {
    answerRaw(client, busy.status, busy.text);
    return;
  }
  guard.opened();
  const upstream = net.connect({
    host: bareHost(target),
    port: Number(authority[2]),
    lookup: guard.lookup,
  });
  guard.track(upstream);
  upstream.once('close', () => guard.closed());
  // A client gone (before or after the tunnel is up) leaves nobody to deliver to.
  client.once('close', () => upstream.destroy());
  const timer = setTimeout(
    () => upstream.destroy(new TimeoutError('connect')),
    guard.options.connectTimeoutMs,
  );
  const onError = (err: Error) => {
    clearTimeout(timer);
    const refused = guard.refusalOf(err, req.url!);
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
      guard.count(head.length);
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
      from.setTimeout(guard.options.idleTimeoutMs, idle);
      from.on('data', (chunk: Buffer) => guard.count(chunk.length));
      from.on('error', idle);
      from.pipe(to);
    }
    // The origin closing ends the client's side once what it sent is flushed (pipe's end()).
  });
}

/** An answer written straight to a socket the HTTP server has handed over (CONNECT, Upgrade). */
export function answerRaw(socket: Socket, status: number, text: string, extra = ''): void {
  const body = `${text}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${TEXT}\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n${extra}\r\n${body}`,
  );
}
