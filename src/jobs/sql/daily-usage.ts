import type { Executor } from './executor.ts';

/**
 * Counts `jobs` more created jobs for the tenant's UTC `day`, unless that takes the day past `limit`;
 * answers whether it counted them. One conditional upsert, atomic under concurrent enqueues, the same
 * on both dialects.
 */
export async function countDailyJobs(
  trx: Executor,
  tenantId: string,
  day: string,
  jobs: number,
  limit: number,
): Promise<boolean> {
  const counted = await trx
    .insertInto('tenant_job_usage')
    .values({ tenant_id: tenantId, day, jobs })
    .onConflict((oc) =>
      oc
        .columns(['tenant_id', 'day'])
        .doUpdateSet((eb) => ({ jobs: eb('tenant_job_usage.jobs', '+', eb.ref('excluded.jobs')) }))
        .where((eb) => eb(eb('tenant_job_usage.jobs', '+', eb.ref('excluded.jobs')), '<=', limit)),
    )
    .returning('jobs')
    .executeTakeFirst();
  return counted !== undefined;
}
