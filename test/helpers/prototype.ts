/**
 * Names found by `in` on every plain object, through Object.prototype: each lookup keyed by outside input
 * is tested with all of them, since any one of them passing means the lookup consults the prototype chain.
 */
export const PROTOTYPE_NAMES = ['toString', '__proto__', 'constructor', 'valueOf', 'hasOwnProperty'] as const;
