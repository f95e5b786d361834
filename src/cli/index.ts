/** cli: `tern start | check-config | dkim | classify`; bin/tern.js only calls run(). */
export { run, type Io } from './cli.ts';
