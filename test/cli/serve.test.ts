import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { generateApiKey } from '../../src/tenancy/keys.ts';
import { CHILD_GUARD_MS, startServerProcess } from '../helpers/child.ts';
import { waitFor } from '../helpers/jobs.ts';
import { makeTempDir } from '../helpers/tmp.ts';

describe('conveyor serve with CONVEYOR_PROCESSES=2', () => {
  it('serves from two processes sharing the port, bootstraps once, and stops cleanly on SIGTERM', async () => {
    const dir = await makeTempDir('conveyor-serve-');
    const key = generateApiKey();
    const server = await startServerProcess({
      CONVEYOR_DATA_DIR: dir.path,
      CONVEYOR_PROCESSES: '2',
      CONVEYOR_ADMIN_KEY: key,
      CONVEYOR_LOG_LEVEL: 'info',
    });
    const { url } = server;
    const listening = () => (server.output().match(/"msg":"listening"/g) ?? []).length;
    try {
      // /readyz answers once the first process listens; wait for the second before counting on it.
      await waitFor('the second process to listen', async () => listening() >= 2, CHILD_GUARD_MS).catch(
        (error: Error) => assert.fail(`${error.message}:\n${server.output()}`),
      );
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
      await server.stop('SIGTERM');
    }
    const output = server.output();
    assert.equal(server.process.exitCode, 0, output);
    assert.equal(listening(), 2, output);
    await dir.cleanup();
  });
});
