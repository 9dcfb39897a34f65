import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A loopback HTTP server that records every TCP connection it accepts and every request it reads, so a
 * test can assert that something was never reached ("zero hits"), whatever protocol the visitor spoke.
 */
export interface Recorder {
  host: string;
  port: number;
  /** `http://host:port` (IPv6 in brackets). */
  url: string;
  /** TCP connections accepted so far. */
  readonly connections: number;
  /** `METHOD path` of every request read so far. */
  readonly requests: readonly string[];
  /** Sockets still open. */
  readonly open: number;
  close(): Promise<void>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** Listens on `host` (default 127.0.0.1), port 0; answers 404 unless given a handler. */
export async function startRecorder(host = '127.0.0.1', handler?: Handler): Promise<Recorder> {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  let connections = 0;
  const server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    if (handler) handler(req, res);
    else res.writeHead(404).end();
  });
  server.on('connection', (socket: Socket) => {
    connections++;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.listen(0, host);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    host,
    port,
    url: `http://${shown}:${port}`,
    get connections() {
      return connections;
    },
    requests,
    get open() {
      return sockets.size;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
