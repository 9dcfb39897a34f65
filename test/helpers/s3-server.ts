import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { CHILD_GUARD_MS } from './child.ts';
import { makeTempDir } from './tmp.ts';

export interface S3Server {
  /** `http://127.0.0.1:<port>`; use with forcePathStyle. */
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  close(): Promise<void>;
}

export interface S3ServerOptions {
  /** Name of the bucket created at start-up. */
  bucket?: string;
}

// Runs in the child. It exits when the parent disconnects, including when the parent dies, so an aborted
// test run leaves no server behind.
const CHILD_SOURCE = `
const S3rver = require(process.argv[1]);
const [directory, bucket] = process.argv.slice(2);
const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: bucket, configs: [] }] });
server.run().then(
  (address) => process.send({ port: address.port }),
  (error) => { console.error(error); process.exit(1); },
);
process.on('disconnect', () => server.close().finally(() => process.exit(0)));
`;

/**
 * Starts a real s3rver on 127.0.0.1 with an ephemeral port, a fresh data directory and one empty bucket.
 *
 * It runs in a child process started with --openssl-legacy-provider: s3rver encrypts ListObjectsV2
 * continuation tokens with DES, which OpenSSL 3 only offers through the legacy provider, so without it any
 * listing longer than one page fails with a 500. That switch is process-wide, hence not in the test process.
 */
export async function startS3Server(options: S3ServerOptions = {}): Promise<S3Server> {
  const bucket = options.bucket ?? 'conveyor-test';
  const dir = await makeTempDir('conveyor-s3rver-');
  const s3rverPath = createRequire(import.meta.url).resolve('s3rver');
  const child = spawn(
    process.execPath,
    ['--openssl-legacy-provider', '-e', CHILD_SOURCE, s3rverPath, dir.path, bucket],
    { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  let port: number;
  try {
    port = await waitForPort(child);
  } catch (error) {
    child.kill();
    await dir.cleanup();
    throw new Error(`s3rver did not start: ${(error as Error).message}\n${stderr}`);
  }
  // A test that forgets close() should not keep the runner alive; the child goes when we do.
  child.unref();
  child.channel?.unref();

  let closing: Promise<void> | undefined;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    region: 'us-east-1',
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    close() {
      closing ??= (async () => {
        child.ref();
        child.channel?.ref();
        const running = child.exitCode === null && child.signalCode === null;
        const exited = running ? once(child, 'exit') : Promise.resolve();
        if (child.connected) child.disconnect();
        await exited;
        await dir.cleanup();
      })();
      return closing;
    },
  };
}

function waitForPort(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out')), CHILD_GUARD_MS);
    child.once('message', (message: { port: number }) => {
      clearTimeout(timer);
      resolve(message.port);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with code ${code}`));
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}
