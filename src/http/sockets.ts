import {
  type IncomingMessage,
  type Server,
  type ServerOptions,
  type ServerResponse,
  STATUS_CODES,
} from 'node:http';
import { Socket } from 'node:net';
import type { Config } from '../config/config.ts';
import { ConveyorError } from '../errors.ts';
import { requestIdOf } from '../ops/request-id.ts';
import { problemAnswer, writeProblem } from '../problems.ts';

/**
 * The HTTP server's defence of its own sockets, for an origin that may face clients directly:
 *
 * - connections: at most `httpMaxConnections` per process and `httpMaxConnectionsPerAddress` per TCP
 *   peer; one more is closed as it arrives, before a byte of it is read;
 * - slow clients: headers must be complete within `httpHeadersTimeoutMs` (408), a request body that
 *   brings nothing for `httpBodyIdleTimeoutMs` is cut off, and an idle keep-alive connection closes after
 *   `httpKeepAliveTimeoutMs`. There is no limit on a whole request: an upload at any steady speed takes
 *   as long as it needs, and a response to a slow reader is never cut by the body's timer;
 * - lingering close: an answer sent before the body was read (401, 413) is followed by reading and
 *   discarding the rest of the body, within bounds, so that the client sees the answer;
 * - framing: Transfer-Encoding that cannot frame a request reliably is refused (RFC 9112 §6).
 *
 * The work per request is two header lookups; the rest is per connection or per request with a body.
 */

export type SocketSettings = Pick<
  Config,
  | 'httpHeadersTimeoutMs'
  | 'httpBodyIdleTimeoutMs'
  | 'httpKeepAliveTimeoutMs'
  | 'httpMaxConnections'
  | 'httpMaxConnectionsPerAddress'
  | 'httpLingeringCloseBytes'
  | 'httpLingeringCloseMs'
>;

/** Why the guard closed a connection (a label of `conveyor_http_connections_closed_total`). */
export type ClosedReason =
  | 'max_connections'
  | 'max_connections_per_address'
  | 'headers_timeout'
  | 'body_idle';

/** Node's own end of a connection after its last response: the FIN once all is written, then close. */
const destroySoon = Socket.prototype.destroySoon;

/** The response in flight on a socket (Node's bookkeeping; absent from its types). */
type HttpSocket = Socket & { _httpMessage?: ServerResponse | null };

/** The options of `http.createServer` that carry the timeouts. */
export function serverOptions(settings: SocketSettings): ServerOptions {
  return {
    headersTimeout: settings.httpHeadersTimeoutMs,
    // No limit on a whole request: uploads take as long as they take (the body idle timeout ends a
    // stalled one).
    requestTimeout: 0,
    keepAliveTimeout: settings.httpKeepAliveTimeoutMs,
    // Node enforces the headers timeout on this interval (every 30 s by default, so a client could
    // overstay by as much); checking 4 times per timeout, at most once a second, keeps the overshoot
    // within a quarter of it.
    connectionsCheckingInterval: Math.max(25, Math.min(1000, Math.floor(settings.httpHeadersTimeoutMs / 4))),
  };
}

export class SocketGuard {
  readonly #settings: SocketSettings;
  readonly #closed: (reason: ClosedReason) => void;
  /** Open connections per peer address, counted only while a per-address limit is set. */
  readonly #perAddress = new Map<string, number>();

  constructor(settings: SocketSettings, closed: (reason: ClosedReason) => void = () => {}) {
    this.#settings = settings;
    this.#closed = closed;
  }

  /** Applies the connection limits to `server`. */
  attach(server: Server): void {
    const { httpMaxConnections: max, httpMaxConnectionsPerAddress: perAddress } = this.#settings;
    if (max > 0) {
      // Node closes a connection past this as it accepts it, before it even makes a socket for it.
      server.maxConnections = max;
      server.on('drop', () => this.#closed('max_connections'));
    }
    if (perAddress > 0) server.on('connection', (socket: Socket) => this.#count(socket, perAddress));
  }

  /**
   * Closed at once rather than answered: an answer means reading a request, which holds the descriptor
   * for up to the headers timeout, and descriptors are what a flood exhausts. (nginx's
   * limit_conn answers 503 because it counts only connections whose request headers it has read; it
   * leaves slow headers to client_header_timeout. Here both apply.)
   */
  #count(socket: Socket, limit: number): void {
    const address = socket.remoteAddress;
    if (address === undefined) return; // Already gone.
    const open = (this.#perAddress.get(address) ?? 0) + 1;
    if (open > limit) {
      this.#closed('max_connections_per_address');
      socket.destroy();
      return;
    }
    this.#perAddress.set(address, open);
    socket.once('close', () => {
      const left = (this.#perAddress.get(address) ?? 1) - 1;
      if (left === 0) this.#perAddress.delete(address);
      else this.#perAddress.set(address, left);
    });
  }

  /**
   * Runs first for every request, the delivery shortcut's included. Returns false when it has answered
   * the request itself (faulty framing); otherwise arms the body's timers when there is a body.
   */
  admit(req: IncomingMessage, res: ServerResponse): boolean {
    const headers = req.headers;
    const coding = headers['transfer-encoding'];
    if (coding !== undefined) {
      const problem = coding === 'chunked' && req.httpVersionMinor === 1 ? null : framingProblem(req, coding);
      this.#body(req, res);
      if (problem) {
        refuse(req, res, problem);
        return false;
      }
    } else {
      const length = headers['content-length'];
      if (length !== undefined && length !== '0') this.#body(req, res);
    }
    return true;
  }

  /** The idle timer while the body arrives, and the lingering close should the answer come first. */
  #body(req: IncomingMessage, res: ServerResponse): void {
    const idleMs = this.#settings.httpBodyIdleTimeoutMs;
    const socket = req.socket;
    if (idleMs > 0) {
      // The socket's timer restarts with every read (and write); Node reports its expiry on the request
      // while the body is incomplete, and on the response in flight. With a listener there, Node leaves
      // the decision to us instead of destroying the socket.
      socket.setTimeout(idleMs);
      req.on('timeout', () => {
        // Bytes not consumed yet: the wait is ours (a busy store, a handler not reading yet), not the
        // client's, and the socket is not even read meanwhile.
        if (req.readableLength > 0) {
          socket.setTimeout(idleMs);
          return;
        }
        this.#closed('body_idle');
        socket.destroy();
      });
      res.on('timeout', () => {
        // The body is all in: its timer must not cut the response, however slowly the client reads it.
        if (req.complete) socket.setTimeout(0);
      });
    }
    if (this.#settings.httpLingeringCloseBytes > 0 && this.#settings.httpLingeringCloseMs > 0) {
      res.once('prefinish', () => {
        if (!req.complete && !req.destroyed) this.#linger(req);
      });
    }
  }

  /**
   * The answer is written and the body is not all read. Node would now dump the rest on a keep-alive
   * connection (however large), or close one that ends here, and a close with unread data makes the
   * kernel reset the connection, which also throws away the answer the client has not read yet: clients
   * that send the whole body before reading (Python's http.client and requests) report a broken pipe
   * instead of the 413. So, like nginx's lingering close, the rest is read and discarded, within
   * `httpLingeringCloseBytes` and `httpLingeringCloseMs`; past either the connection is closed anyway.
   */
  #linger(req: IncomingMessage): void {
    const socket = req.socket;
    let left = this.#settings.httpLingeringCloseBytes;
    let closing = false;
    const stop = () => {
      clearTimeout(timer);
      socket.destroy();
    };
    const timer = setTimeout(stop, this.#settings.httpLingeringCloseMs);
    // Node ends a connection after its last response with destroySoon(): the FIN goes out the same way
    // here, but the descriptor stays open until the body has been read.
    socket.destroySoon = () => {
      closing = true;
      socket.end();
    };
    socket.once('close', () => clearTimeout(timer));
    req.once('end', () => {
      clearTimeout(timer);
      socket.destroySoon = destroySoon;
      if (closing) socket.destroySoon();
    });
    req.on('data', (chunk: Buffer) => {
      left -= chunk.length;
      if (left < 0) stop();
    });
    // Whoever read the body before the answer has no use for the rest.
    req.unpipe();
    req.resume();
  }

  /**
   * Fastify's `clientErrorHandler`: Node could not parse a request, or its headers took longer than the
   * headers timeout. Answered as a problem document, then closed.
   */
  readonly clientError = (error: Error & { code?: string; reason?: string }, socket: Socket): void => {
    // Node calls this again for every later chunk of a connection whose parser failed: answered already.
    if (error.code === 'ECONNRESET' || socket.destroyed || !socket.writable) return;
    const timeout = error.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    const inFlight = (socket as HttpSocket)._httpMessage;
    // The body of a request that was answered already is malformed (a refusal of its framing, sent before
    // the body): that answer goes out whole, and what follows it gets its own 400 should it come.
    if (inFlight?.writableEnded && !timeout) return;
    // A response under way cannot be followed by another.
    if (inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    const problem = timeout
      ? new ConveyorError('request_timeout', 'The request headers did not arrive in time')
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? new ConveyorError('header_fields_too_large')
        : error.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW'
          ? new ConveyorError('payload_too_large', 'The chunk extensions are too large')
          : new ConveyorError('bad_request', `Malformed request: ${error.reason ?? error.message}`);
    // No request was parsed, so the document names neither an instance nor a request id.
    const answer = problemAnswer(problem, {});
    let head = `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status]}\r\nConnection: close\r\n`;
    for (const [name, value] of Object.entries(answer.headers)) head += `${name}: ${value}\r\n`;
    socket.end(`${head}\r\n${answer.body}`);
    if (timeout) this.#closed('headers_timeout');
    const lingerMs = this.#settings.httpLingeringCloseMs;
    if (timeout || inFlight || lingerMs === 0) {
      // Slow headers may still arrive and be parsed into a request, and a request in flight must see its
      // end: close as soon as the answer is written.
      destroySoon.call(socket);
      return;
    }
    // Node's parser goes on reading (and discarding) after an error, so the client's remaining bytes
    // cause no reset; the connection closes when the client closes its side, or after the lingering time.
    const timer = setTimeout(() => socket.destroy(), lingerMs);
    socket.once('close', () => clearTimeout(timer));
  };
}

/**
 * Why a request's Transfer-Encoding (present, and not a plain `chunked` on HTTP/1.1) cannot be accepted,
 * or null when it can. Transfer coding names are case-insensitive (RFC 9110 §10.1.4).
 */
function framingProblem(req: IncomingMessage, coding: string): ConveyorError | null {
  // RFC 9112 §6.1: "A server or client that receives an HTTP/1.0 message containing a Transfer-Encoding
  // header field MUST treat the message as if the framing is faulty, even if a Content-Length is
  // present, and close the connection after processing the message."
  if (req.httpVersionMajor === 1 && req.httpVersionMinor === 0) {
    return new ConveyorError('bad_request', 'An HTTP/1.0 request cannot use Transfer-Encoding');
  }
  const codings = coding
    .split(',')
    .map((c) => c.split(';')[0]!.trim().toLowerCase())
    .filter((c) => c !== '');
  // RFC 9112 §6.3: "If a Transfer-Encoding header field is present in a request and the chunked transfer
  // coding is not the final encoding, the message body length cannot be determined reliably; the server
  // MUST respond with the 400 (Bad Request) status code and then close the connection." (Node's parser
  // refuses some of these itself, answered by clientError; the rest arrive here.) Chunked applied twice
  // is as bad, RFC 9112 §6.1: "A sender MUST NOT apply the chunked transfer coding more than once to a
  // message body".
  if (codings.at(-1) !== 'chunked' || codings.indexOf('chunked') !== codings.length - 1) {
    return new ConveyorError('bad_request', 'The body is not framed by a final chunked transfer coding');
  }
  // RFC 9112 §6.1: "A server that receives a request message with a transfer coding it does not
  // understand SHOULD respond with 501 (Not Implemented)." Chunked is the only one we decode.
  if (codings.length > 1) {
    return new ConveyorError(
      'not_implemented',
      `Unsupported transfer coding: ${codings.slice(0, -1).join(', ')}`,
    );
  }
  return null;
}

/** Answers a request refused before any route saw it, and closes the connection after the answer. */
function refuse(req: IncomingMessage, res: ServerResponse, problem: ConveyorError): void {
  const requestId = requestIdOf(req);
  const instance = (req.url ?? '/').split('?')[0]!;
  writeProblem(
    res,
    req.method,
    problem,
    { instance, requestId },
    { 'x-request-id': requestId, connection: 'close' },
  );
}
