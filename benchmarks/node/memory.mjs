// unstorage's memory driver: the rounds of benchmarks/bench_memory.py (served by rounds.mjs).
import { createStorage } from "unstorage";
import memoryDriver from "unstorage/drivers/memory";
import { batches, sequential } from "./workload.mjs";

export async function setup([n, rounds]) {
  const storage = createStorage({ driver: memoryDriver() });
  return {
    cases: {
      sequential: () => sequential(storage, Number(n)),
      batches: () => batches(storage, Number(rounds)),
    },
    teardown: () => storage.dispose(),
  };
}
