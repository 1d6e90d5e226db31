// Serve benchmark rounds over stdin, so node subjects take turns with Python ones.
// Usage: node rounds.mjs <subject script> [args...]. The script exports
// `setup(args)`, resolving to {cases: {name: async (options) => ops}, teardown?: async () => {}}.
// Prints {"ready": [case names]}, then reads one JSON line per round ({"case", ...options})
// and answers {"ops", "seconds"} as timed here; stdin closing ends it (after teardown).
import { createInterface } from "node:readline";

const [script, ...args] = process.argv.slice(2);
const subject = await import(`./${script}`);
const { cases, teardown } = await subject.setup(args);
const say = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);
say({ ready: Object.keys(cases) });

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const { case: name, ...options } = JSON.parse(line);
  const body = cases[name];
  if (!body) {
    say({ error: `no case ${name}` });
    continue;
  }
  try {
    const start = process.hrtime.bigint();
    const ops = await body(options);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    say(typeof ops === "number" ? { ops, seconds } : { ...ops, seconds: ops.seconds ?? seconds });
  } catch (error) {
    say({ error: String(error?.stack ?? error) });
  }
}
if (teardown) await teardown();
process.exit(0);
