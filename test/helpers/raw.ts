import { once } from 'node:events';
import { connect, type Socket } from 'node:net';

/** One response as a raw client read it: status line, headers (lower-case names) and body text. */
export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * A bare TCP client for what fetch will not do: send a request and its whole body before reading a byte
 * of the answer (as Python's http.client does), trickle headers, use odd framing, or stay silent.
 */
export class RawConnection {
  readonly socket: Socket;
  /** Everything received so far, as latin1 text. */
  received = '';
  /** The code of the socket's error, if it had one (ECONNRESET, EPIPE). */
  error: string | undefined;
  /** Whether the server's FIN arrived (a clean close rather than a reset). */
  ended = false;
  isClosed = false;
  readonly closed: Promise<void>;
  readonly connected: Promise<void>;

  /** `paused`: read nothing until `resume()`, so that the kernel holds the answer meanwhile. */
  constructor(url: string, options: { localAddress?: string; paused?: boolean } = {}) {
    const { hostname, port } = new URL(url);
    this.socket = connect({
      host: hostname,
      port: Number(port),
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    });
    if (options.paused) this.socket.pause();
    this.socket.setEncoding('latin1');
    this.socket.on('data', (text: string) => {
      this.received += text;
    });
    this.socket.on('end', () => {
      this.ended = true;
    });
    this.socket.on('error', (error: NodeJS.ErrnoException) => {
      this.error ??= error.code ?? error.message;
    });
    this.connected = once(this.socket, 'connect').then(() => {});
    this.connected.catch(() => {});
    this.closed = new Promise((resolve) =>
      this.socket.once('close', () => {
        this.isClosed = true;
        resolve();
      }),
    );
  }

  /** Writes `data`; resolves once the kernel took it, or with the error that stopped it. */
  write(data: string | Buffer): Promise<NodeJS.ErrnoException | null> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) {
        resolve(new Error('destroyed'));
        return;
      }
      this.socket.write(data, (error) => resolve(error ?? null));
    });
  }

  resume(): void {
    this.socket.resume();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /**
   * The first response received from character `from` on, once its head and Content-Length bytes of
   * body are all in; else null.
   */
  response(from = 0): RawResponse | null {
    const end = this.received.indexOf('\r\n\r\n', from);
    if (end < 0) return null;
    const [statusLine, ...lines] = this.received.slice(from, end).split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = Number(headers['content-length'] ?? 0);
    const body = this.received.slice(end + 4);
    if (body.length < length) return null;
    return {
      status: Number(statusLine!.split(' ')[1]),
      headers,
      body: Buffer.from(body.slice(0, length), 'latin1').toString('utf8'),
    };
  }

  /** Waits for the server to close the connection, then answers the response it sent (or fails). */
  async closedResponse(): Promise<RawResponse> {
    await this.closed;
    const response = this.response();
    if (!response) {
      throw new Error(`no whole response before the close (${this.error ?? 'no error'}): ${this.received}`);
    }
    return response;
  }
}

/** A request head: the request line, Host, then `headers`, and the blank line. */
export function head(
  url: string,
  requestLine: string,
  headers: Record<string, string | number> = {},
): string {
  const lines = [requestLine, `Host: ${new URL(url).host}`];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** `data` as one chunk of the chunked transfer coding. */
export function chunk(data: Buffer | string): Buffer {
  const bytes = Buffer.from(data);
  return Buffer.concat([Buffer.from(`${bytes.length.toString(16)}\r\n`), bytes, Buffer.from('\r\n')]);
}

/** The last chunk of a chunked body. */
export const LAST_CHUNK = '0\r\n\r\n';
