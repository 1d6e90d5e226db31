// unstorage's redis driver (ioredis): the rounds of benchmarks/bench_redis.py.
import { createStorage } from "unstorage";
import redisDriver from "unstorage/drivers/redis";
import { batches, sequential } from "./workload.mjs";

export async function setup([url, n, rounds]) {
  const storage = createStorage({ driver: redisDriver({ url, base: "node-bench" }) });
  return {
    cases: {
      sequential: () => sequential(storage, Number(n)),
      batches: () => batches(storage, Number(rounds)),
    },
    teardown: async () => {
      await storage.clear();
      await storage.dispose();
    },
  };
}
