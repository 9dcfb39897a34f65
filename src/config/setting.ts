/** What a row of the settings table (schema.ts) may be, and the value and input types each row gives. */

/** Validates a string setting's value beyond its type: an error message, or null when it is fine. */
export type StringCheck = (value: string) => string | null;

/**
 * Another setting's typed value, for a grammar whose bounds are settings too (the presets are checked
 * against the transform limits). The loader parses that setting first; reading one that is itself
 * invalid ends this parse without a second message.
 */
export type ReadSetting = (key: string) => unknown;

export type Setting =
  | { type: 'string'; default: string; secret?: boolean; check?: StringCheck; doc: string }
  | { type: 'optional'; default?: undefined; secret?: boolean; check?: StringCheck; doc: string }
  | { type: 'int'; default: number; min: number; max: number; doc: string }
  | { type: 'bool'; default: boolean; doc: string }
  | { type: 'enum'; default: string; values: readonly string[]; doc: string }
  /**
   * Named non-negative integers, written `a=1,b=2` (or a JSON object in the config file). Given entries
   * replace the default's, the rest keep their defaults; `keys`, when set, are the only names allowed.
   */
  | { type: 'limits'; default: string; keys?: readonly string[]; max: number; doc: string }
  /**
   * Text in a grammar of its own (src/config/parsers.ts), turned once at load into the value the code
   * uses: `parse` answers it or throws a message naming the bad entry. Without a default, an unset
   * setting's value is undefined.
   */
  | {
      type: 'parsed';
      default?: string;
      secret?: boolean;
      parse: (value: string, read: ReadSetting) => unknown;
      doc: string;
    };

/** The value a setting hands out. */
export type ValueOf<S> = S extends { type: 'parsed'; parse: (...args: never[]) => infer T }
  ? S extends { default: string }
    ? T
    : T | undefined
  : S extends { type: 'int' }
    ? number
    : S extends { type: 'limits'; keys: readonly (infer K extends string)[] }
      ? Readonly<Record<K, number>>
      : S extends { type: 'limits' }
        ? Readonly<Record<string, number>>
        : S extends { type: 'bool' }
          ? boolean
          : S extends { type: 'optional' }
            ? string | undefined
            : S extends { type: 'enum'; values: readonly (infer V)[] }
              ? V
              : string;

/** What a setting may be given as in the config file or `loadConfig`'s overrides. */
export type InputOf<S> = S extends { type: 'parsed' }
  ? string
  : S extends { type: 'limits' }
    ? string | Readonly<Record<string, number>>
    : ValueOf<S>;

type Joined<U> = (U extends unknown ? (part: U) => void : never) extends (part: infer I) => void ? I : never;

/**
 * One table from sections of settings written apart (the video settings' parts): a key that two sections
 * define is refused when the module loads, where a spread would let the later one win in silence.
 */
export function joinSections<T extends Record<string, Setting>[]>(...sections: T): Joined<T[number]> {
  const joined: Record<string, Setting> = {};
  for (const section of sections) {
    for (const [key, setting] of Object.entries(section)) {
      if (Object.hasOwn(joined, key)) throw new Error(`setting ${key} is defined in two sections`);
      joined[key] = setting;
    }
  }
  return joined as Joined<T[number]>;
}
