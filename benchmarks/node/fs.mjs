// unstorage's fs driver: the rounds of benchmarks/bench_fs.py, each in a fresh directory.
import { rmSync } from "node:fs";
import { createStorage } from "unstorage";
import fsDriver from "unstorage/drivers/fs";
import { batches, sequential } from "./workload.mjs";

export async function setup([dir, n, rounds]) {
  let storage;
  // A new directory and storage per round, as the Python subjects get; made untimed.
  const fresh = async () => {
    if (storage) await storage.dispose();
    rmSync(dir, { recursive: true, force: true });
    storage = createStorage({ driver: fsDriver({ base: dir }) });
  };
  return {
    cases: {
      fresh: async () => {
        await fresh();
        return 1;
      },
      sequential: () => sequential(storage, Number(n)),
      batches: () => batches(storage, Number(rounds)),
    },
    teardown: async () => {
      if (storage) await storage.dispose();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
