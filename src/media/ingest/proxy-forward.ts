/**
 * The guarded proxy's absolute-form requests (RFC 9112 §3.2.2, `GET http://host/path`): checked by
 * the ProxyGuard, forwarded on a fresh connection through the guarded lookup with hop-by-hop fields
 * removed, both bodies streamed and counted. Only `http:` is forwarded; `ftp:` and any other scheme
 * are refused like a forbidden address.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { type ProxyGuard, TEXT, TimeoutError } from './proxy-guard.ts';

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

/** Serves one absolute-form request through `guard`. */
export function forwardRequest(guard: ProxyGuard, req: IncomingMessage, res: ServerResponse): void {
  if (!guard.authorized(req.headers['proxy-authorization'])) {
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
  const target = url.protocol === 'http:' ? guard.check(url.href, url.host) : undefined;
  if (target === undefined) {
    if (url.protocol !== 'http:') guard.refuse(`${url.protocol} ${url.host}: scheme not allowed`);
    answer(res, 403, `refused: ${guard.lastRefusal}`);
    return;
  }
  const busy = guard.busy();
  if (busy !== undefined) {
    answer(res, busy.status, busy.text);
    return;
  }
  const headers = forwardHeaders(req.rawHeaders);
  // RFC 9112 §3.2.2: "When a proxy receives a request with an absolute-form of request-target, the
  // proxy MUST ignore the received Host header field (if any) and instead replace it with the host
  // information of the request-target."
  headers.push('Host', target.host);
  guard.opened();
  const upstream = http.request(target, {
    method: req.method,
    headers,
    setHost: false,
    agent: false, // a fresh socket, resolved through the guarded lookup; never a pooled one
    lookup: guard.lookup,
  });
  const fail = (status: number, text: string) => {
    if (!res.headersSent) answer(res, status, text);
    else res.destroy();
  };
  const timer = setTimeout(
    () => upstream.destroy(new TimeoutError('connect')),
    guard.options.connectTimeoutMs,
  );
  upstream.once('close', () => {
    clearTimeout(timer);
    guard.closed();
  });
  upstream.once('socket', (socket: Socket) => {
    guard.track(socket);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.setTimeout(guard.options.idleTimeoutMs, () => upstream.destroy(new TimeoutError('idle')));
    });
  });
  upstream.on('error', (err) => {
    clearTimeout(timer);
    const refused = guard.refusalOf(err, target.host);
    if (refused) fail(403, `refused: ${refused}`);
    else fail(err instanceof TimeoutError ? 504 : 502, `upstream: ${err.message}`);
  });
  upstream.once('response', (upRes) => {
    clearTimeout(timer);
    res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, forwardHeaders(upRes.rawHeaders));
    upRes.on('data', (chunk: Buffer) => guard.count(chunk.length));
    upRes.on('error', () => res.destroy());
    upRes.pipe(res);
  });
  req.on('data', (chunk: Buffer) => guard.count(chunk.length));
  req.pipe(upstream);
  // The client went away before the answer was complete: nothing is waiting for the origin any more.
  res.once('close', () => {
    if (!res.writableFinished) upstream.destroy();
  });
}

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
