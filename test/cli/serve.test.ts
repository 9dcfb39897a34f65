import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { generateApiKey } from '../../src/tenancy/keys.ts';
import { makeTempDir } from '../helpers/tmp.ts';

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

async function waitReady(url: string, deadlineMs = 30_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    try {
      if ((await fetch(`${url}/readyz`)).ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('server did not become ready');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('conveyor serve with CONVEYOR_PROCESSES=2', () => {
  it('serves from two processes sharing the port, bootstraps once, and stops cleanly on SIGTERM', async () => {
    const dir = await makeTempDir('conveyor-serve-');
    const port = await freePort();
    const key = generateApiKey();
    const child = spawn(process.execPath, [MAIN, 'serve'], {
      env: {
        PATH: process.env['PATH'],
        CONVEYOR_DATA_DIR: dir.path,
        CONVEYOR_HOST: '127.0.0.1',
        CONVEYOR_PORT: String(port),
        CONVEYOR_PROCESSES: '2',
        CONVEYOR_ADMIN_KEY: key,
        CONVEYOR_LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => {
      output += chunk;
    });
    child.stderr.on('data', (chunk) => {
      output += chunk;
    });
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitReady(url);
      const uploaded = await fetch(`${url}/api/v1/assets?filename=a.txt`, {
        method: 'POST',
        body: 'shared by both processes',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'text/plain' },
      });
      assert.equal(uploaded.status, 201);
      const { id } = (await uploaded.json()) as { id: string };
      // Whichever process takes each connection, every one sees the same database and blobs.
      for (let i = 0; i < 10; i++) {
        const res = await fetch(`${url}/a/${id}`, { headers: { connection: 'close' } });
        assert.equal(await res.text(), 'shared by both processes');
      }
      const tenants = await fetch(`${url}/api/v1/tenants`, { headers: { authorization: `Bearer ${key}` } });
      assert.equal(((await tenants.json()) as { items: unknown[] }).items.length, 1, 'bootstrapped once');
    } finally {
      child.kill('SIGTERM');
    }
    const [code] = await once(child, 'exit');
    assert.equal(code, 0, output);
    const listening = output.match(/"msg":"listening"/g) ?? [];
    assert.equal(listening.length, 2, output);
    await dir.cleanup();
  });
});
