/** A binary min-heap keyed by due time: the scheduled queue costs one small entry per message. */
export interface HeapEntry<T> { readonly due: number; readonly value: T }

export class MinHeap<T> {
  readonly #items: HeapEntry<T>[] = [];

  get size(): number { return this.#items.length; }
  peek(): HeapEntry<T> | undefined { return this.#items[0]; }

  push(due: number, value: T): void {
    const items = this.#items;
    items.push({ due, value });
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((items[parent] as HeapEntry<T>).due <= due) break;
      items[i] = items[parent] as HeapEntry<T>;
      i = parent;
    }
    items[i] = { due, value };
  }

  pop(): HeapEntry<T> | undefined {
    const items = this.#items;
    const top = items[0];
    const last = items.pop();
    if (top === undefined || last === undefined || items.length === 0) return top;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= items.length) break;
      const right = left + 1;
      const child = right < items.length && (items[right] as HeapEntry<T>).due < (items[left] as HeapEntry<T>).due ? right : left;
      if ((items[child] as HeapEntry<T>).due >= last.due) break;
      items[i] = items[child] as HeapEntry<T>;
      i = child;
    }
    items[i] = last;
    return top;
  }

  /** Every value, in no particular order (admin actions); O(n). */
  values(): T[] {
    return this.#items.map((e) => e.value);
  }

  /** Remove every entry matching the predicate (admin actions); O(n). */
  removeWhere(match: (value: T) => boolean): number {
    const kept = this.#items.filter((e) => !match(e.value));
    const removed = this.#items.length - kept.length;
    this.#items.length = 0;
    for (const e of kept) this.push(e.due, e.value);
    return removed;
  }

  /** The first entry whose value matches (admin actions); O(n). */
  find(match: (value: T) => boolean): HeapEntry<T> | undefined {
    return this.#items.find((e) => match(e.value));
  }

  /**
   * Move every matching entry to `due`, its value changed by `update` (made due at once by an
   * action); entries already due by then are left as they are unless `evenIfDue`. O(n).
   */
  updateWhere(match: (value: T) => boolean, due: number, update: (value: T) => T = (v) => v, options: { evenIfDue?: boolean } = {}): number {
    const all = this.#items.splice(0);
    let moved = 0;
    for (const e of all) {
      const hit = (options.evenIfDue || e.due > due) && match(e.value);
      if (hit) moved++;
      this.push(hit ? Math.min(due, e.due) : e.due, hit ? update(e.value) : e.value);
    }
    return moved;
  }
}
