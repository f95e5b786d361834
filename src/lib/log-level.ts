import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

/**
 * A root logger whose level a SIGHUP can change (log.level) for it and every child made from it:
 * a pino child keeps the level it was made with. The stages make their children once, at start,
 * so the set stays small.
 */
export function levelledLogger(options: LoggerOptions, destination?: DestinationStream): { log: Logger; setLevel(level: string): void } {
  const children = new Set<Logger>();
  const withChildren = { ...options, onChild: (child: Logger) => void children.add(child) };
  const log = destination ? pino(withChildren, destination) : pino(withChildren);
  return {
    log,
    setLevel(level) {
      log.level = level;
      for (const child of children) child.level = level;
    },
  };
}
