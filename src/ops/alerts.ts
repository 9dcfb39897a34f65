import type { Kysely } from 'kysely';
import type { Config } from '../config/config.ts';
import type { Database } from '../db/tables.ts';
import type { JobMonitor } from '../jobs/monitor.ts';

export interface Alert {
  /** `job_success_rate`, `queue_depth`, `oldest_queued_age` or `breaker_open`. */
  rule: string;
  /** What the rule is about: a lane, a breaker key, or `jobs`. */
  subject: string;
  message: string;
  value: number;
  threshold: number;
  firedAt: string;
}

interface Log {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * Alert rules over the job engine, evaluated every `alertIntervalSeconds` by `serve`: each firing rule
 * (per subject) is POSTed as JSON to `alertWebhookUrl`, then stays quiet for `alertCooldownSeconds`.
 * The cooldown lives in the database (`alert_deliveries`), so however many processes evaluate the rules,
 * one of them sends each alert: a process claims the delivery with a conditional upsert before it POSTs,
 * and hands the claim back if the POST fails. A failed delivery is logged and tried again at the next
 * evaluation; nothing here ever throws.
 */
export class Alerter {
  readonly #config: Config;
  readonly #monitor: JobMonitor;
  readonly #log: Log;
  readonly #now: () => number;
  readonly #db: Kysely<Database>;
  /** When this process first saw each breaker not closed: a failing probe re-opens it with a new opened_at. */
  readonly #breakerSince = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;

  constructor(options: {
    config: Config;
    db: Kysely<Database>;
    monitor: JobMonitor;
    log: Log;
    now?: () => number;
  }) {
    this.#config = options.config;
    this.#db = options.db;
    this.#monitor = options.monitor;
    this.#log = options.log;
    this.#now = options.now ?? Date.now;
  }

  get enabled(): boolean {
    return this.#config.alertWebhookUrl !== undefined;
  }

  start(): void {
    if (!this.enabled || this.#timer) return;
    this.#timer = setInterval(() => {
      this.#running ??= this.evaluate().finally(() => {
        this.#running = undefined;
      });
    }, this.#config.alertIntervalSeconds * 1000);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  /** The rules that fire now (cooldown aside). */
  async firing(): Promise<Alert[]> {
    const config = this.#config;
    const now = this.#now();
    const firedAt = new Date(now).toISOString();
    const alerts: Alert[] = [];
    if (config.alertSuccessRatePercent > 0) {
      const attempts = await this.#monitor.attempts(now - config.healthWindowMinutes * 60_000);
      if (attempts.successRate !== null && attempts.successRate * 100 < config.alertSuccessRatePercent) {
        const percent = Math.round(attempts.successRate * 1000) / 10;
        alerts.push({
          rule: 'job_success_rate',
          subject: 'jobs',
          message: `Job success rate ${percent} % over ${config.healthWindowMinutes} min is below ${config.alertSuccessRatePercent} %`,
          value: percent,
          threshold: config.alertSuccessRatePercent,
          firedAt,
        });
      }
    }
    if (config.alertQueueDepth > 0 || config.alertOldestQueuedSeconds > 0) {
      const status = await this.#monitor.status('all');
      for (const lane of status.lanes) {
        const waiting = lane.queued + lane.failed;
        if (config.alertQueueDepth > 0 && waiting > config.alertQueueDepth) {
          alerts.push({
            rule: 'queue_depth',
            subject: lane.lane,
            message: `Lane ${lane.lane} holds ${waiting} waiting jobs (threshold ${config.alertQueueDepth})`,
            value: waiting,
            threshold: config.alertQueueDepth,
            firedAt,
          });
        }
        const age = lane.oldestDueAgeSeconds;
        if (config.alertOldestQueuedSeconds > 0 && age !== null && age > config.alertOldestQueuedSeconds) {
          alerts.push({
            rule: 'oldest_queued_age',
            subject: lane.lane,
            message: `Lane ${lane.lane}'s oldest due job has waited ${Math.round(age)} s (threshold ${config.alertOldestQueuedSeconds} s)`,
            value: Math.round(age),
            threshold: config.alertOldestQueuedSeconds,
            firedAt,
          });
        }
      }
    }
    if (config.alertBreakerOpenSeconds > 0) {
      const breakers = await this.#monitor.breakers('all');
      const notClosed = new Set<string>();
      for (const breaker of breakers) {
        if (breaker.state === 'closed') continue;
        notClosed.add(breaker.key);
        const openedAt = breaker.openedAt === null ? now : Date.parse(breaker.openedAt);
        const since = Math.min(openedAt, this.#breakerSince.get(breaker.key) ?? now);
        this.#breakerSince.set(breaker.key, since);
        const seconds = (now - since) / 1000;
        if (seconds > config.alertBreakerOpenSeconds) {
          alerts.push({
            rule: 'breaker_open',
            subject: breaker.key,
            message: `Circuit breaker ${breaker.key} has not closed for ${Math.round(seconds)} s`,
            value: Math.round(seconds),
            threshold: config.alertBreakerOpenSeconds,
            firedAt,
          });
        }
      }
      for (const key of this.#breakerSince.keys()) if (!notClosed.has(key)) this.#breakerSince.delete(key);
    }
    return alerts;
  }

  /** Evaluates the rules and delivers those out of their cooldown; answers the alerts delivered. */
  async evaluate(): Promise<Alert[]> {
    const url = this.#config.alertWebhookUrl;
    if (!url) return [];
    let alerts: Alert[];
    try {
      alerts = await this.firing();
    } catch (error) {
      this.#log.error({ err: error }, 'alert evaluation failed');
      return [];
    }
    const delivered: Alert[] = [];
    const cooldownMs = this.#config.alertCooldownSeconds * 1000;
    for (const alert of alerts) {
      const key = `${alert.rule}/${alert.subject}`;
      const now = this.#now();
      let claimed: boolean;
      try {
        claimed = await this.#claim(key, now, cooldownMs);
      } catch (error) {
        this.#log.error({ err: error, alert: key }, 'alert cooldown could not be read');
        continue;
      }
      if (!claimed) continue;
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(alert),
          signal: AbortSignal.timeout(this.#config.alertTimeoutMs),
        });
        await res.body?.cancel();
        if (!res.ok) throw new Error(`webhook answered ${res.status}`);
        delivered.push(alert);
        this.#log.warn({ alert }, 'alert sent');
      } catch (error) {
        this.#log.error({ err: error, alert: key }, 'alert delivery failed');
        // Hand the claim back, so that the next evaluation (of any process) tries again.
        await this.#db
          .updateTable('alert_deliveries')
          .set({ sent_at: 0 })
          .where('key', '=', key)
          .where('sent_at', '=', now)
          .execute()
          .catch(() => {});
      }
    }
    return delivered;
  }

  /** Takes the right to send `key` now: true unless it reached the webhook within the cooldown. */
  async #claim(key: string, now: number, cooldownMs: number): Promise<boolean> {
    const row = await this.#db
      .insertInto('alert_deliveries')
      .values({ key, sent_at: now })
      .onConflict((oc) =>
        oc
          .column('key')
          .doUpdateSet({ sent_at: now })
          .where('alert_deliveries.sent_at', '<=', now - cooldownMs),
      )
      .returning('key')
      .executeTakeFirst();
    return row !== undefined;
  }
}
