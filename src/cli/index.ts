/** cli: `tern start | check-config`; bin/tern.js only calls run(). */
export { run, type Io } from './cli.ts';
