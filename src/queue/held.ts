/** An entry that can leave its list by other means (popped from the heap on its own time). */
export interface HeldEntry { gone?: boolean }

interface List<T> { items: T[]; head: number }

/**
 * Held messages per path, in the order they were placed (about the order they fall due): a path
 * with room takes the next few from the head without a pass over the whole heap. Entries that
 * left on their own are skipped, trimmed from the head, and compacted away now and then.
 */
export class HeldLists<T extends HeldEntry> {
  readonly #byPath = new Map<string, List<T>>();

  add(path: string, entry: T): void {
    const list = this.#byPath.get(path);
    if (list) list.items.push(entry);
    else this.#byPath.set(path, { items: [entry], head: 0 });
  }

  /** Up to `max` entries of a path still waiting, earliest placed first; they leave the list. */
  take(path: string, max: number): T[] {
    const list = this.#byPath.get(path);
    if (!list) return [];
    const taken: T[] = [];
    while (list.head < list.items.length && taken.length < max) {
      const entry = list.items[list.head++] as T;
      if (!entry.gone) taken.push(entry);
    }
    this.#tidy(path, list);
    return taken;
  }

  /** After an entry of the path left on its own: drop what has gone from the head. */
  trim(path: string): void {
    const list = this.#byPath.get(path);
    if (list) this.#tidy(path, list);
  }

  /** Forget a path's list (its entries were all moved by other means). */
  clear(path: string): void {
    this.#byPath.delete(path);
  }

  #tidy(path: string, list: List<T>): void {
    while (list.head < list.items.length && (list.items[list.head] as T).gone) list.head++;
    if (list.head === list.items.length) this.#byPath.delete(path);
    else if (list.head > 1024 && list.head * 2 > list.items.length) {
      list.items = list.items.slice(list.head);
      list.head = 0;
    }
  }
}
