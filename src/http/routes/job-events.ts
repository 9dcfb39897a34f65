import { PassThrough, type Readable } from 'node:stream';
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import websocket, { type WebSocket } from '@fastify/websocket';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { FINAL_STATES, type JobState } from '../../glossary.ts';
import type { JobEvent } from '../../jobs/context.ts';
import type { Changes, JobEventFilter } from '../../jobs/events.ts';
import type { Job } from '../../jobs/types.ts';
import type { AppDeps } from '../app.ts';
import { IdParams, noContent, problemResponses } from '../schemas.ts';
import { jobView } from './jobs.ts';

/**
 * A comment line this often keeps idle streams open through proxies and load balancers, most of which
 * drop a connection silent for 30-60 s, and lets the server notice a vanished client.
 */
export const HEARTBEAT_MS = 15_000;

type EventName = JobEvent['kind'] | 'snapshot';

/** One open stream, whatever the transport. */
interface Sink {
  send(event: EventName, job: Job): void;
  heartbeat(): void;
  end(): void;
}

const EventsQuery = Type.Object({
  type: Type.Optional(Type.String({ maxLength: 64, description: 'Only jobs of this type' })),
  access_token: Type.Optional(
    Type.String({ description: 'The API key or JWT, for clients that cannot set headers' }),
  ),
});
const TokenQuery = Type.Object({ access_token: EventsQuery.properties.access_token });

/** The 200 of an event stream; a WebSocket upgrade on the same path answers 101 instead. */
const eventStream = {
  description: 'The events, as Server-Sent Events, until the client goes away (or the job ends)',
  content: {
    'text/event-stream': {
      schema: { type: 'string', description: '`event: <kind>`, `id: <n>`, `data: <job JSON>` records' },
    },
  },
};

const description = (what: string) =>
  `${what} as Server-Sent Events (\`text/event-stream\`: \`event: <kind>\`, \`id: <change time, ms>\`, \`data: <job JSON>\`), or over WebSocket on the same path (JSON messages \`{event, job}\`). Kinds: enqueued, started, progress, succeeded, failed, dead, cancelled, released. An SSE client that reconnects with \`Last-Event-ID\` resumes: it gets what changed since as \`snapshot\` events.`;

/**
 * The Last-Event-ID an EventSource sends when it reconnects: the change time (engine ms) of the last event
 * it received, as the `id:` of every event says. Anything else is ignored, as if the client were new.
 */
function lastEventId(value: string | string[] | undefined): number | undefined {
  return typeof value === 'string' && /^\d{1,15}$/.test(value) ? Number(value) : undefined;
}

/** Live job events: one job's (`/jobs/:id/events`) and a tenant's (`/events`), as SSE or WebSocket. */
export async function jobEventRoutes(base: FastifyInstance, opts: { deps: AppDeps }): Promise<void> {
  await base.register(websocket);
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  const { jobs, jobEvents: hub, config } = opts.deps;
  const open = new Set<Sink>();
  // Open streams would hold the server's close forever: end them first.
  app.addHook('preClose', async () => {
    for (const sink of open) sink.end();
  });

  /** Wires a sink to the hub; answers the function that starts it (after any snapshot was sent). */
  const stream = (sink: Sink, filter: JobEventFilter, type?: string) => {
    const buffered: JobEvent[] = [];
    /** Job id -> the change time of its snapshot: older events (loaded after subscribing) are in it. */
    const floors = new Map<string, number>();
    let started = false;
    let done = false;
    const forward = (event: JobEvent) => {
      if (type !== undefined && event.job.type !== type) return;
      if (Date.parse(event.job.updatedAt) < (floors.get(event.job.id) ?? 0)) return;
      sink.send(event.kind, event.job);
      // By the event's kind, not the job's state: an event from another process carries the row as it
      // is when loaded, which may already be final while the final event itself is still on its way.
      if (filter.jobId !== undefined && FINAL_STATES.includes(event.kind as JobState)) finish();
    };
    const unsubscribe = hub.subscribe(filter, (event) => {
      if (started) forward(event);
      else buffered.push(event);
    });
    const heartbeat = setInterval(() => sink.heartbeat(), HEARTBEAT_MS);
    heartbeat.unref();
    const finish = () => {
      if (done) return;
      done = true;
      clearInterval(heartbeat);
      unsubscribe();
      open.delete(entry);
      sink.end();
    };
    const entry: Sink = { ...sink, end: finish };
    open.add(entry);
    return {
      finish,
      /** Sends the snapshots (current rows, read after subscribing), then the events held back meanwhile. */
      start(snapshots: readonly Job[] = []) {
        if (done) return;
        for (const snapshot of snapshots) {
          if (type !== undefined && snapshot.type !== type) continue;
          floors.set(snapshot.id, Date.parse(snapshot.updatedAt));
          sink.send('snapshot', snapshot);
        }
        if (filter.jobId !== undefined && snapshots.some((job) => FINAL_STATES.includes(job.state))) {
          return finish();
        }
        started = true;
        for (const event of buffered.splice(0)) {
          if (done) break;
          forward(event);
        }
      },
    };
  };

  const sse = (): Sink & { body: PassThrough } => {
    const body = new PassThrough();
    const write = (text: string) => {
      if (!body.destroyed && !body.writableEnded) body.write(text);
    };
    return {
      body,
      // The id is the change's time: what a reconnecting client sends back as Last-Event-ID.
      send: (event, job) =>
        write(`event: ${event}\nid: ${Date.parse(job.updatedAt)}\ndata: ${JSON.stringify(jobView(job))}\n\n`),
      heartbeat: () => write(': heartbeat\n\n'),
      end() {
        if (!body.writableEnded) body.end();
      },
    };
  };

  const ws = (socket: WebSocket): Sink => ({
    send(event, job) {
      if (socket.readyState === socket.OPEN) socket.send(JSON.stringify({ event, job: jobView(job) }));
    },
    heartbeat() {
      if (socket.readyState === socket.OPEN) socket.ping();
    },
    end() {
      if (socket.readyState === socket.OPEN || socket.readyState === socket.CONNECTING)
        socket.close(1000, 'done');
    },
  });

  app.route({
    method: 'GET',
    url: '/jobs/:id/events',
    // EventSource and a browser's WebSocket cannot set headers (src/http/auth.ts).
    config: { accessTokenQuery: true },
    schema: {
      operationId: 'streamJobEvents',
      tags: ['jobs'],
      summary: "A job's live events",
      description: description('The job’s current state (event `snapshot`), then its changes until it ends,'),
      params: IdParams,
      querystring: TokenQuery,
      response: {
        200: eventStream,
        204: noContent('Resumed with a Last-Event-ID at or after the job’s end: nothing more will come'),
        ...problemResponses,
      },
    },
    // 404 (unknown, or another tenant's job) before any stream starts or the socket is upgraded.
    preHandler: async (request) => {
      await jobs.admin.get(request.principal!.tenantId, (request.params as { id: string }).id);
    },
    handler: async (request, reply) => {
      const principal = request.principal!;
      const sink = sse();
      const s = stream(sink, { tenantId: principal.tenantId, jobId: request.params.id });
      sink.body.on('close', s.finish);
      reply.raw.once('close', s.finish);
      // Subscribed first, then the snapshot is read: no change can fall between the two.
      let job: Job;
      try {
        job = await jobs.admin.get(principal.tenantId, request.params.id);
      } catch (error) {
        s.finish();
        throw error;
      }
      const seen = lastEventId(request.headers['last-event-id']);
      const unchanged = seen !== undefined && Date.parse(job.updatedAt) <= seen;
      if (unchanged && FINAL_STATES.includes(job.state)) {
        // The client saw the end already. HTML's EventSource: a 204 "fails the connection", so it stops
        // reconnecting to a stream that has nothing more to say.
        s.finish();
        return reply.code(204).send();
      }
      // A resuming client that saw this state gets only what comes next.
      s.start(unchanged ? [] : [job]);
      return sendEventStream(reply, sink.body);
    },
    wsHandler: async (socket, request) => {
      const principal = request.principal!;
      const { id } = request.params as { id: string };
      const s = stream(ws(socket), { tenantId: principal.tenantId, jobId: id });
      socket.once('close', s.finish);
      await jobs.admin.get(principal.tenantId, id).then(
        (job) => s.start([job]),
        () => s.finish(),
      );
    },
  });

  app.route({
    method: 'GET',
    url: '/events',
    // EventSource and a browser's WebSocket cannot set headers (src/http/auth.ts).
    config: { accessTokenQuery: true },
    schema: {
      operationId: 'streamEvents',
      tags: ['jobs'],
      summary: "The tenant's live job events",
      description: description('Every change to the tenant’s jobs (optionally of one `type`),'),
      querystring: EventsQuery,
      response: { 200: eventStream, ...problemResponses },
    },
    handler: async (request, reply) => {
      const { tenantId } = request.principal!;
      const sink = sse();
      const s = stream(sink, { tenantId }, request.query.type);
      sink.body.on('close', s.finish);
      reply.raw.once('close', s.finish);
      // A first comment flushes the headers at once, so clients know they are subscribed.
      sink.body.write(': subscribed\n\n');
      const seen = lastEventId(request.headers['last-event-id']);
      if (seen === undefined) {
        s.start();
        return sendEventStream(reply, sink.body);
      }
      // Resuming: subscribed first, then what changed since is read, so nothing falls between the two.
      let changes: Changes;
      try {
        changes = await hub.changedSince(tenantId, seen, config.jobEventsResumeMaxJobs);
      } catch (error) {
        s.finish();
        throw error;
      }
      if (!changes.complete) {
        // Too much to replay: the client reloads what it shows (GET /api/v1/jobs) and goes on from here.
        const data = { reason: `more than ${config.jobEventsResumeMaxJobs} jobs changed since ${seen}` };
        sink.body.write(`event: reset\nid: ${changes.at}\ndata: ${JSON.stringify(data)}\n\n`);
      }
      s.start(changes.complete ? changes.jobs : []);
      return sendEventStream(reply, sink.body);
    },
    wsHandler: (socket, request) => {
      const { type } = request.query as { type?: string };
      const s = stream(ws(socket), { tenantId: request.principal!.tenantId }, type);
      socket.once('close', s.finish);
      s.start();
    },
  });
}

/** Answers with an event stream. */
function sendEventStream(reply: FastifyReply, body: Readable) {
  return (
    reply
      .header('content-type', 'text/event-stream; charset=utf-8')
      .header('cache-control', 'no-cache')
      .header('x-accel-buffering', 'no')
      // Not reused once the stream ends: a stream ended at shutdown must not hold the close for the
      // keep-alive timeout.
      .header('connection', 'close')
      .send(body)
  );
}
