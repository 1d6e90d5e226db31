// Shared by the node benchmark scripts: the fastest of several timed runs, the same rule as
// benchmarks/harness.py (Bench.measure keeps the best of its repeats).

/**
 * Run `body` `times` times (calling `before` untimed ahead of each run) and return
 * {ops, seconds} of the fastest run; `body` resolves to the number of operations it did.
 */
export async function best(times, body, before = () => {}) {
  let fastest = Infinity;
  let ops = 0;
  for (let i = 0; i < times; i++) {
    before();
    const start = process.hrtime.bigint();
    ops = await body();
    fastest = Math.min(fastest, Number(process.hrtime.bigint() - start) / 1e9);
  }
  return { ops, seconds: fastest };
}
