import { useEffect, useState } from 'preact/hooks';
import { SignedOut } from './api.ts';

/** A value fetched now and every `everyMs`; `refresh` fetches again at once (after an action). */
export function usePoll<T>(load: () => Promise<T>, everyMs: number, deps: unknown[] = []): { data: T | undefined; error: string | undefined; refresh: () => void } {
  const [data, setData] = useState<T | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    const run = (): void => {
      load().then(
        (value) => {
          if (!live) return;
          setData(value);
          setError(undefined);
        },
        (err: unknown) => {
          if (err instanceof SignedOut) return location.assign('/dashboard/login');
          if (live) setError((err as Error).message);
        },
      );
    };
    run();
    const timer = setInterval(run, everyMs);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [tick, ...deps]);
  return { data, error, refresh: () => setTick((n) => n + 1) };
}
