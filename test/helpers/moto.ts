import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { CHILD_GUARD_MS } from './child.ts';

/**
 * moto_server (Python moto, in this machine's image): a second real S3-protocol server on loopback, for
 * the S3 operations s3rver (test/helpers/s3-server.ts) does not implement. s3rver 3.7 answers
 * MethodNotAllowed to ListParts and AbortMultipartUpload and NotImplemented to ListMultipartUploads,
 * and @tus/s3-store lists the parts on every PATCH; so resumable uploads on S3 are tested on moto.
 */
export const MOTO_BIN = findOnPath('moto_server');

/** The `skip` option of a test that needs moto: a reason without it; in CI (CI=true) it must be there. */
export function skipWithoutMoto(): string | false {
  if (MOTO_BIN) return false;
  if (process.env['CI'] === 'true') throw new Error('moto_server is required in CI (Python moto)');
  return 'moto_server is not installed';
}

export interface MotoS3 {
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  close(): Promise<void>;
}

/** moto_server with one empty bucket, and the settings that point Conveyor at it. */
export async function startMotoS3(bucket = 'conveyor-test'): Promise<MotoS3> {
  const moto = await startMoto(MOTO_BIN!);
  const client = new S3Client({
    endpoint: moto.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } catch (error) {
    await moto.close();
    throw error;
  } finally {
    client.destroy();
  }
  return {
    endpoint: moto.endpoint,
    bucket,
    region: 'us-east-1',
    accessKeyId: 'test',
    secretAccessKey: 'test',
    close: moto.close,
  };
}

export function findOnPath(name: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/**
 * moto_server on 127.0.0.1 with an ephemeral port (it prints the one it got). A shell holds it and stops it
 * when its stdin closes, which also happens when this process dies: an aborted run leaves no server behind.
 */
export async function startMoto(bin: string): Promise<{ endpoint: string; close(): Promise<void> }> {
  const script = '"$0" -H 127.0.0.1 -p 0 & server=$!; read _; kill $server; wait $server';
  const child: ChildProcess = spawn('sh', ['-c', script, bin], { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`moto_server did not start:\n${output}`)),
      CHILD_GUARD_MS,
    );
    const read = (chunk: Buffer) => {
      // Keeps draining its request log, so that the pipe never fills up.
      if (output.length > 10_000) return;
      output += chunk.toString();
      const match = /Running on http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    };
    child.stdout?.on('data', read);
    child.stderr?.on('data', read);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`moto_server exited with ${code}:\n${output}`));
    });
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.stdin?.end();
      await exited;
    },
  };
}
