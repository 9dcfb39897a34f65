import { channel } from 'node:diagnostics_channel';

/**
 * Named points inside Conveyor's multi-step writes, published on the `conveyor:step` diagnostics channel
 * as `{ step }` when they are reached:
 *
 *   blob.staged        the bytes are in a temporary, not registered (BlobLedger.store)
 *   blob.registered    the `blobs` row is `live`, the bytes not yet committed
 *   blob.committed     the bytes are readable; nothing references them yet
 *   publish.begun      a publish's transaction is open, nothing written (AssetService.publish)
 *   publish.counted    the asset's version_count is incremented
 *   publish.recorded   the version row is inserted
 *   publish.audited    the audit row is inserted; the transaction commits next
 *   publish.committed  the version is committed, not yet answered
 *
 * Nothing subscribes in production (publishing to a channel nobody listens to is a property check). A
 * tracer can; the crash tests do, to stop a process at exactly one of these points and kill it there
 * (test/http/crash.test.ts, test/fixtures/freeze-at-step.ts), so every window a crash could hit is tried.
 */
export type Step =
  | 'blob.staged'
  | 'blob.registered'
  | 'blob.committed'
  | 'publish.begun'
  | 'publish.counted'
  | 'publish.recorded'
  | 'publish.audited'
  | 'publish.committed';

export const STEP_CHANNEL = 'conveyor:step';

const steps = channel(STEP_CHANNEL);

export function step(name: Step): void {
  if (steps.hasSubscribers) steps.publish({ step: name });
}
