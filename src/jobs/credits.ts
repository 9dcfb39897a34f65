import { newId } from '../db/ids.ts';
import { ConveyorError } from '../errors.ts';
import { creditBalance, giveCredits, insertLedgerRow, takeCredits } from './sql/credits.ts';
import type { Executor } from './sql/executor.ts';

/**
 * Credit movements. A balance changes only together with a ledger row that records the movement and the
 * balance after it, in the caller's transaction, so the ledger always adds up to the balance.
 */
export interface Movement {
  tenantId: string;
  jobId: string | null;
  /** Credits, positive. */
  amount: number;
  reason: string;
  now: number;
  actor: string | null;
}

/** Takes credits from a tenant that holds a balance; 402 when it is short (roll the transaction back). */
export async function charge(trx: Executor, movement: Movement): Promise<void> {
  const charged = await takeCredits(trx, movement.tenantId, movement.amount);
  if (charged === undefined) {
    const balance = (await creditBalance(trx, movement.tenantId)) ?? 0;
    throw new ConveyorError(
      'insufficient_credit',
      `${movement.reason} costs ${movement.amount} credits; the balance is ${balance}`,
      {
        extra: { cost: movement.amount, balance },
      },
    );
  }
  await record(trx, movement, -movement.amount, charged);
}

/** Gives credits back (a dead or cancelled job); nothing for a tenant without a balance. */
export async function refund(trx: Executor, movement: Movement): Promise<void> {
  const balance = await giveCredits(trx, movement.tenantId, movement.amount);
  if (balance !== undefined) await record(trx, movement, movement.amount, balance);
}

async function record(trx: Executor, movement: Movement, amount: number, balance: number) {
  await insertLedgerRow(trx, {
    id: newId('crd', movement.now),
    tenant_id: movement.tenantId,
    job_id: movement.jobId,
    amount,
    balance,
    reason: movement.reason,
    actor: movement.actor,
    created_at: movement.now,
  });
}
