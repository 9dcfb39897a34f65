import { setTimeout as sleep } from 'node:timers/promises';
import { Ajv, type ValidateFunction } from 'ajv';
import { ConveyorError } from '../errors.ts';
import type { Lane } from '../glossary.ts';
import { type JobContext, PermanentJobError } from './types.ts';

/**
 * What a job type is: its payload schema (JSON Schema), its handler, and its self-protection settings.
 * Every process that enqueues or runs a type registers the same definition (they are code, not data).
 */
export interface JobTypeDefinition<P = unknown> {
  type: string;
  /** JSON Schema of the payload; enqueue refuses a payload that does not match (400). */
  schema: object;
  handler: (payload: P, context: JobContext) => Promise<unknown>;
  /** Lane when the enqueuer names none. */
  lane?: Lane;
  maxAttempts?: number;
  /**
   * Run-time limit of one attempt, or a function of the payload for types whose jobs differ (an ingest's
   * kind); default: the lane's (`jobLaneTimeoutSeconds`). 0 = none.
   */
  timeoutMs?: number | ((payload: P) => number);
  backoff?: { baseMs: number; maxMs: number };
  /** Active jobs of this type across all workers; `jobTypeConcurrency` overrides. */
  concurrency?: number;
  /** Starts per second across all workers; `jobTypeRatePerSecond` overrides. */
  ratePerSecond?: number;
  /** The dependency the job needs, for its circuit breaker (e.g. `host:example.com`). */
  breakerKey?: (payload: P) => string | undefined;
  /** Starts per second per breaker key across all workers and types (e.g. per origin host). */
  keyRatePerSecond?: number;
  breaker?: { threshold?: number; openSeconds?: number };
  /** An identical succeeded job's result is reused for this long instead of running again. */
  freshnessMs?: number;
  /** Credits reserved at enqueue from tenants that hold a balance. */
  cost?: number;
}

/** A registered type with its compiled payload validator. */
export interface RegisteredType extends JobTypeDefinition {
  validate: ValidateFunction;
}

const TYPE_NAME = /^[a-z][a-z0-9_.-]{0,63}$/;

export class JobRegistry {
  readonly #types = new Map<string, RegisteredType>();
  readonly #ajv = new Ajv({ allErrors: true, strict: false, coerceTypes: false, useDefaults: true });

  register<P>(definition: JobTypeDefinition<P>): this {
    if (!TYPE_NAME.test(definition.type)) throw new Error(`invalid job type name ${definition.type}`);
    if (this.#types.has(definition.type)) throw new Error(`job type ${definition.type} is registered twice`);
    this.#types.set(definition.type, {
      ...(definition as JobTypeDefinition),
      validate: this.#ajv.compile(definition.schema),
    });
    return this;
  }

  get(type: string): RegisteredType | undefined {
    return this.#types.get(type);
  }

  /** The type, or a 400 naming the known ones. */
  require(type: string): RegisteredType {
    const found = this.#types.get(type);
    if (!found) {
      throw new ConveyorError('validation_failed', `Unknown job type ${JSON.stringify(type)}`, {
        extra: { knownTypes: this.types() },
      });
    }
    return found;
  }

  types(): string[] {
    return [...this.#types.keys()].sort();
  }
}

/**
 * Built-in types: `noop` (health probes, benchmarks of the engine itself) and `sleep` (a job that takes
 * time and honours its abort signal, for tests of timeouts, cancellation and shutdown).
 */
export function registerBuiltinTypes(registry: JobRegistry): JobRegistry {
  registry.register<Record<string, unknown>>({
    type: 'noop',
    schema: { type: 'object' },
    handler: async () => ({ ok: true }),
  });
  registry.register<{ ms: number; fail?: string; permanent?: boolean }>({
    type: 'sleep',
    schema: {
      type: 'object',
      properties: {
        ms: { type: 'integer', minimum: 0, maximum: 86_400_000 },
        fail: { type: 'string', maxLength: 1000 },
        permanent: { type: 'boolean' },
      },
      required: ['ms'],
      additionalProperties: false,
    },
    handler: async (payload, context) => {
      const step = Math.max(1, Math.min(payload.ms, 1000));
      for (let slept = 0; slept < payload.ms; slept += step) {
        await sleep(Math.min(step, payload.ms - slept), undefined, { signal: context.signal });
        context.progress({ percent: Math.min(100, ((slept + step) / payload.ms) * 100), stage: 'sleeping' });
      }
      if (payload.fail !== undefined) {
        throw payload.permanent ? new PermanentJobError(payload.fail) : new Error(payload.fail);
      }
      return { slept: payload.ms };
    },
  });
  return registry;
}
