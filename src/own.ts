/**
 * Lookups keyed by outside input (a JWT claim, a request field, a config file key) must see only the
 * table's own entries. `key in table` and `table[key]` also find what every object inherits: a role
 * claim of `toString` or `__proto__` is "in" any object literal, and `table['constructor']` is a
 * function, which compares false with every number, so a rank check built on it passes for everyone.
 */

/** The table's own value for `key`, or undefined: never one inherited from Object.prototype. */
export function own<V>(table: Readonly<Record<string, V>>, key: string): V | undefined {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}

/** Whether `key` names one of the table's own entries. */
export function hasOwnKey<K extends string>(table: Readonly<Record<K, unknown>>, key: unknown): key is K {
  return typeof key === 'string' && Object.hasOwn(table, key);
}
