import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import type { S3Client } from '@aws-sdk/client-s3';
import { putInParts } from '../../src/storage/s3-parts.ts';

const MIB = 1024 * 1024;

/**
 * The part loop's bounds, which the real-server contract suite (s3-store.test.ts, on s3rver) cannot see:
 * a recording client answers each command after a turn of the event loop, as a server would.
 */
function recordingClient() {
  const parts = new Map<number, Buffer>();
  const buffers = new Set<ArrayBufferLike>();
  let inFlight = 0;
  let maxInFlight = 0;
  const commands: string[] = [];
  const client = {
    async send(command: { constructor: { name: string }; input: any }) {
      const name = command.constructor.name;
      commands.push(name);
      if (name === 'UploadPartCommand') {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        const body = command.input.Body as Buffer;
        buffers.add(body.buffer);
        // Copied when "sent": the loop may reuse the buffer once the part is answered.
        parts.set(command.input.PartNumber, Buffer.from(body));
        await new Promise((resolve) => setTimeout(resolve, 5));
        inFlight--;
        return { ETag: `"${command.input.PartNumber}"` };
      }
      if (name === 'CreateMultipartUploadCommand') return { UploadId: 'u1' };
      if (name === 'CompleteMultipartUploadCommand') {
        assert.deepEqual(
          command.input.MultipartUpload.Parts.map((p: { PartNumber: number }) => p.PartNumber),
          [...parts.keys()].sort((a, b) => a - b),
        );
        return {};
      }
      if (name === 'PutObjectCommand') {
        parts.set(1, Buffer.from(command.input.Body as Buffer));
        return {};
      }
      throw new Error(`unexpected ${name}`);
    },
  };
  const object = () => Buffer.concat([...parts.entries()].sort(([a], [b]) => a - b).map(([, b]) => b));
  return {
    client: client as unknown as S3Client,
    object,
    commands,
    buffers,
    maxInFlight: () => maxInFlight,
  };
}

async function* chunks(total: number, size: number) {
  for (let sent = 0; sent < total; sent += size) {
    const chunk = Buffer.alloc(Math.min(size, total - sent));
    for (let i = 0; i < chunk.length; i++) chunk[i] = (sent + i) % 251;
    yield chunk;
  }
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const target = { Bucket: 'b', Key: 'k', ContentType: 'application/octet-stream' };

describe('putInParts', () => {
  it('sends 52 MiB in 5 MiB parts with at most queueSize in flight and queueSize + 1 buffers', async () => {
    const recorder = recordingClient();
    const upload: { id?: string } = {};
    const total = 52 * MIB + 123;
    await putInParts(
      recorder.client,
      target,
      chunks(total, 64 * 1024 + 7),
      { partSize: 5 * MIB, queueSize: 3 },
      upload,
    );
    const expected: Buffer[] = [];
    for await (const chunk of chunks(total, 64 * 1024 + 7)) expected.push(chunk);
    assert.equal(sha(recorder.object()), sha(Buffer.concat(expected)));
    assert.equal(upload.id, 'u1');
    assert.equal(recorder.commands.filter((c) => c === 'UploadPartCommand').length, 11);
    assert.ok(recorder.maxInFlight() <= 3, `at most 3 parts in flight, saw ${recorder.maxInFlight()}`);
    assert.ok(recorder.buffers.size <= 4, `at most 4 part buffers, saw ${recorder.buffers.size}`);
  });

  it('sends a body that fits one part as a single PutObject, and an empty body too', async () => {
    for (const total of [0, 3 * MIB]) {
      const recorder = recordingClient();
      const upload: { id?: string } = {};
      await putInParts(
        recorder.client,
        target,
        chunks(total, 65_536),
        { partSize: 5 * MIB, queueSize: 3 },
        upload,
      );
      assert.deepEqual(recorder.commands, ['PutObjectCommand']);
      assert.equal(recorder.object().length, total);
      assert.equal(upload.id, undefined);
    }
  });

  it('on a source error, waits for the upload it created so the caller can abort it', async () => {
    const recorder = recordingClient();
    const upload: { id?: string } = {};
    const failure = new Error('client went away');
    async function* failing() {
      yield* chunks(6 * MIB, 65_536);
      throw failure;
    }
    await assert.rejects(
      putInParts(recorder.client, target, failing(), { partSize: 5 * MIB, queueSize: 3 }, upload),
      (error) => error === failure,
    );
    assert.equal(upload.id, 'u1');
    assert.ok(!recorder.commands.includes('CompleteMultipartUploadCommand'));
  });
});
