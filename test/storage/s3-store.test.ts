import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, request, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import {
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { S3BlobStore, type S3BlobStoreOptions } from '../../src/storage/s3-store.ts';
import { type S3Server, startS3Server } from '../helpers/s3-server.ts';
import { blobStoreContract, failingStream, hashStream, listAll, patternStream } from './contract.ts';

const MIB = 1024 * 1024;
const server = await startS3Server();
after(() => server.close());

function storeOptions(target: S3Server, extra: Partial<S3BlobStoreOptions> = {}): S3BlobStoreOptions {
  return {
    endpoint: target.endpoint,
    region: target.region,
    bucket: target.bucket,
    // A fresh prefix per store keeps tests apart on the shared server.
    prefix: `t-${randomUUID()}/`,
    forcePathStyle: true,
    accessKeyId: target.accessKeyId,
    secretAccessKey: target.secretAccessKey,
    partSizeBytes: 5 * MIB,
    queueSize: 4,
    ...extra,
  };
}

function backendClient(target: S3Server): S3Client {
  return new S3Client({
    endpoint: target.endpoint,
    region: target.region,
    forcePathStyle: true,
    credentials: { accessKeyId: target.accessKeyId, secretAccessKey: target.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

// s3rver lacks UploadPartCopy, AbortMultipartUpload and ListMultipartUploads; this exercises the store
// against a server that does not (and shows the fallbacks are tolerated).
blobStoreContract('S3BlobStore on s3rver', async () => {
  const store = new S3BlobStore(storeOptions(server));
  return { store, teardown: () => store.close() };
});

describe('S3BlobStore on s3rver with the multipart APIs it lacks', () => {
  it('commits large blobs with a multipart copy', async (t) => {
    const shim = await startMultipartShim(server);
    t.after(() => shim.close());
    const store = new S3BlobStore(
      storeOptions(shim.target, { multipartCopyThresholdBytes: 6 * MIB, copyPartSizeBytes: 5 * MIB }),
    );
    t.after(() => store.close());
    const size = 11 * MIB + 5;
    const staged = await store.stage(patternStream(size, 21), { maxBytes: size });
    await store.commit(staged);
    assert.equal(shim.partCopies, 3, 'three ranged part copies (5 + 5 + 1 MiB)');
    assert.equal(await hashStream(await store.get(staged.sha256)), staged.sha256);
    assert.equal((await store.stat(staged.sha256))?.size, size);
    assert.equal(await store.sweepTemporary(0), 0, 'the temporary was deleted');
    assert.equal(shim.pending.size, 0);

    await store.commit(staged);
    assert.equal(shim.partCopies, 3, 'committing again copies nothing');

    const small = await store.stage(patternStream(6 * MIB, 22), { maxBytes: 6 * MIB });
    await store.commit(small);
    assert.equal(shim.partCopies, 3, 'at the threshold a single CopyObject is used');
    assert.equal(await hashStream(await store.get(small.sha256)), small.sha256);
    assert.deepEqual(shim.checksummed, [], 'no optional checksums or aws-chunked bodies (see S3BlobStore)');
  });

  it('aborts the multipart upload of a failed stage', async (t) => {
    const shim = await startMultipartShim(server);
    t.after(() => shim.close());
    const store = new S3BlobStore(storeOptions(shim.target));
    t.after(() => store.close());
    const failure = new Error('client went away');
    await assert.rejects(
      store.stage(failingStream(7 * MIB, failure), { maxBytes: 100 * MIB }),
      (error) => error === failure,
    );
    assert.equal(shim.aborts, 1);
    assert.equal(shim.pending.size, 0);
  });

  it('sweeps stale multipart uploads left by a crash', async (t) => {
    const shim = await startMultipartShim(server);
    t.after(() => shim.close());
    const options = storeOptions(shim.target);
    const store = new S3BlobStore(options);
    t.after(() => store.close());
    const client = backendClient(shim.target);
    t.after(() => client.destroy());
    for (const key of [`${options.prefix}tmp/crashed`, `${options.prefix}blobs/ab/${'ab'.repeat(32)}`]) {
      await client.send(new CreateMultipartUploadCommand({ Bucket: server.bucket, Key: key }));
    }
    await client.send(new CreateMultipartUploadCommand({ Bucket: server.bucket, Key: 'someone-else/tmp/x' }));
    assert.equal(await store.sweepTemporary(60 * 60 * 1000), 0, 'fresh uploads are left alone');
    assert.equal(shim.pending.size, 3);
    assert.equal(await store.sweepTemporary(0), 2);
    assert.deepEqual([...shim.pending.values()], ['someone-else/tmp/x']);
  });
});

describe('S3BlobStore', () => {
  it('pages through long listings', async (t) => {
    const store = new S3BlobStore(storeOptions(server, { listPageSize: 2 }));
    t.after(() => store.close());
    for (let i = 0; i < 5; i++) {
      await store.commit(await store.stage(patternStream(10, i), { maxBytes: 10 }));
    }
    assert.equal((await listAll(store)).length, 5);
    for (let i = 0; i < 3; i++) await store.stage(patternStream(10, 100 + i), { maxBytes: 10 });
    assert.equal(await store.sweepTemporary(0), 3);
  });

  it('fails ping for a missing bucket', async (t) => {
    const store = new S3BlobStore({ ...storeOptions(server), bucket: 'no-such-bucket' });
    t.after(() => store.close());
    await assert.rejects(store.ping());
  });

  it('uses the documented key layout', async (t) => {
    const options = storeOptions(server);
    const store = new S3BlobStore(options);
    t.after(() => store.close());
    const client = backendClient(server);
    t.after(() => client.destroy());
    const staged = await store.stage(patternStream(1000, 9), { maxBytes: 1000 });
    await store.commit(staged);
    const key = `${options.prefix}blobs/${staged.sha256.slice(0, 2)}/${staged.sha256}`;
    const listed = await client.send(
      new ListObjectsV2Command({ Bucket: server.bucket, Prefix: options.prefix }),
    );
    assert.deepEqual(
      listed.Contents?.map((object) => [object.Key, object.Size]),
      [[key, 1000]],
    );
  });

  it('rejects unusable options', () => {
    assert.throws(() => new S3BlobStore(storeOptions(server, { partSizeBytes: MIB })), RangeError);
    assert.throws(() => new S3BlobStore(storeOptions(server, { secretAccessKey: undefined })), TypeError);
  });
});

interface MultipartShim {
  /** Connection details for the shim; same bucket and credentials as the server behind it. */
  target: S3Server;
  partCopies: number;
  aborts: number;
  /** Requests that carried optional checksum headers or an aws-chunked body, as `METHOD path`. */
  checksummed: string[];
  /** Open multipart uploads: uploadId -> key. */
  pending: Map<string, string>;
  close(): Promise<void>;
}

/**
 * A pass-through proxy in front of s3rver that adds what s3rver lacks: UploadPartCopy (as a ranged GET plus
 * UploadPart against s3rver), AbortMultipartUpload and ListMultipartUploads (from uploads it saw created).
 * Requests are forwarded with their Host header intact, so s3rver still verifies every signature.
 */
async function startMultipartShim(backend: S3Server): Promise<MultipartShim> {
  const client = backendClient(backend);
  const backendPort = Number(new URL(backend.endpoint).port);
  const initiated = new Map<string, Date>();
  const shim = { partCopies: 0, aborts: 0, checksummed: [] as string[], pending: new Map<string, string>() };

  const xml = (response: ServerResponse, status: number, body: string) => {
    response.writeHead(status, { 'content-type': 'application/xml' });
    response.end(`<?xml version="1.0" encoding="UTF-8"?>${body}`);
  };

  const forward = (
    req: IncomingMessage,
    res: ServerResponse,
    inspect?: (status: number, body: string) => void,
  ) => {
    const upstream = request(
      { host: '127.0.0.1', port: backendPort, method: req.method, path: req.url, headers: req.headers },
      async (answer) => {
        if (!inspect) {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
          return;
        }
        const chunks: Buffer[] = [];
        for await (const chunk of answer) chunks.push(chunk as Buffer);
        const body = Buffer.concat(chunks);
        inspect(answer.statusCode ?? 502, body.toString('utf8'));
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        res.end(body);
      },
    );
    upstream.on('error', (error) => res.destroy(error));
    req.pipe(upstream);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://shim');
    const [, bucket = '', ...rest] = url.pathname.split('/');
    const key = rest.map(decodeURIComponent).join('/');
    const uploadId = url.searchParams.get('uploadId');
    const headers = Object.keys(req.headers).join(' ');
    if (
      /x-amz-(sdk-)?checksum-(?!mode)/.test(headers) ||
      /aws-chunked/.test(String(req.headers['content-encoding']))
    ) {
      shim.checksummed.push(`${req.method} ${url.pathname}`);
    }
    if (req.method === 'PUT' && uploadId && req.headers['x-amz-copy-source']) {
      const [sourceBucket = '', ...sourceKey] = String(req.headers['x-amz-copy-source'])
        .replace(/^\//, '')
        .split('/');
      const part = await client.send(
        new GetObjectCommand({
          Bucket: sourceBucket,
          Key: sourceKey.map(decodeURIComponent).join('/'),
          Range: String(req.headers['x-amz-copy-source-range']),
        }),
      );
      const uploaded = await client.send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          PartNumber: Number(url.searchParams.get('partNumber')),
          Body: await part.Body!.transformToByteArray(),
        }),
      );
      shim.partCopies++;
      req.resume();
      const modified = new Date().toISOString();
      xml(
        res,
        200,
        `<CopyPartResult><LastModified>${modified}</LastModified><ETag>${uploaded.ETag}</ETag></CopyPartResult>`,
      );
    } else if (req.method === 'POST' && url.searchParams.has('uploads')) {
      forward(req, res, (status, body) => {
        const id = /<UploadId>([^<]+)<\/UploadId>/.exec(body)?.[1];
        if (status === 200 && id) {
          shim.pending.set(id, key);
          initiated.set(id, new Date());
        }
      });
    } else if (req.method === 'POST' && uploadId) {
      forward(req, res, (status) => {
        if (status === 200) shim.pending.delete(uploadId);
      });
    } else if (req.method === 'DELETE' && uploadId) {
      req.resume();
      if (!shim.pending.delete(uploadId)) return xml(res, 404, '<Error><Code>NoSuchUpload</Code></Error>');
      shim.aborts++;
      res.writeHead(204).end();
    } else if (req.method === 'GET' && !key && url.searchParams.has('uploads')) {
      req.resume();
      const prefix = url.searchParams.get('prefix') ?? '';
      const uploads = [...shim.pending]
        .filter(([, uploadKey]) => uploadKey.startsWith(prefix))
        .map(
          ([id, uploadKey]) =>
            `<Upload><Key>${uploadKey}</Key><UploadId>${id}</UploadId>` +
            `<Initiated>${initiated.get(id)?.toISOString()}</Initiated></Upload>`,
        );
      xml(
        res,
        200,
        `<ListMultipartUploadsResult><Bucket>${bucket}</Bucket><IsTruncated>false</IsTruncated>` +
          `${uploads.join('')}</ListMultipartUploadsResult>`,
      );
    } else {
      forward(req, res);
    }
  };

  const proxy = createServer((req, res) => {
    handle(req, res).catch((error: Error) =>
      xml(res, 500, `<Error><Code>InternalError</Code><Message>${error.message}</Message></Error>`),
    );
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');
  const { port } = proxy.address() as AddressInfo;
  return Object.assign(shim, {
    target: { ...backend, endpoint: `http://127.0.0.1:${port}`, close: async () => {} },
    async close() {
      client.destroy();
      proxy.closeAllConnections();
      proxy.close();
      await once(proxy, 'close');
    },
  });
}
