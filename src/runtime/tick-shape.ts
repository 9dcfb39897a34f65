import { createHook } from 'node:async_hooks';

/**
 * Keeps Node's `process.nextTick` on its fast path for the life of the process (docs/benchmarks.md,
 * "The nextTick slow path").
 *
 * Every `process.nextTick` builds a queue entry with an object literal whose first keys are computed
 * (`{ [async_id_symbol]: …, [trigger_async_id_symbol]: …, [async_context_frame]: …, callback, args }`).
 * V8 records, for each computed-key store of a literal, the hidden class (map) of the object it stored
 * into, and it has no polymorphic state for those stores: the first time a different map turns up, the
 * store becomes megamorphic for good, and from then on optimised code calls into the runtime for every
 * key of every entry (`Runtime_DefineKeyedOwnPropertyInLiteral`, with `JSObject::MigrateToMap` under it).
 *
 * A different map turns up after any full garbage collection that runs while no entry is alive: the
 * entries' intermediate maps are reachable only from live entries (V8 holds map transitions weakly), so
 * the collection frees them and the next entry gets fresh ones. A server process meets this in its first
 * seconds (start-up does full collections between ticks), and an idle one would meet it later anyway.
 * Node answers several ticks per HTTP response, so on a small response this costs 6-8 % of the CPU.
 *
 * Holding one entry keeps its map, and through the maps' back pointers every map before it, alive, so
 * later entries keep reusing them. An `init` async hook is the only way to see an entry; it is enabled for
 * one `nextTick` call and disabled at once. Call this early, before the first full collection.
 */
export function keepTickObjectShape(): void {
  if (kept !== undefined) return;
  const hook = createHook({
    init(_asyncId, type, _triggerAsyncId, resource) {
      if (type === 'TickObject' && kept === undefined) kept = resource;
    },
  });
  hook.enable();
  try {
    process.nextTick(noop);
  } finally {
    hook.disable();
  }
}

let kept: object | undefined;

function noop(): void {}
