// unstorage's redis driver (ioredis), timed the same way as benchmarks/bench_redis.py.
// Usage: node redis.mjs <redis url> [sequential] [rounds]
// Prints one JSON line per result: {"case", "subject", "ops", "seconds"}.
import { createStorage } from "unstorage";
import redisDriver from "unstorage/drivers/redis";
import { best } from "./timing.mjs";

const url = process.argv[2] ?? "redis://127.0.0.1:6379/0";
const sequential = Number(process.argv[3] ?? 2000);
const rounds = Number(process.argv[4] ?? 20);
const value = { id: 1, name: "user-1", tags: ["a", "b"], score: 1.5 };

const driver = redisDriver({ url, base: "node-bench" });
const storage = createStorage({ driver });
const subject = "unstorage redis (node)";

const seq = await best(3, async () => {
  for (let i = 0; i < sequential; i++) {
    await storage.setItem(`user:${i}`, value);
    await storage.getItem(`user:${i}`);
  }
  return sequential * 2;
});
console.log(JSON.stringify({ case: "sequential set+get", subject, ...seq }));

const keys = Array.from({ length: 1000 }, (_, i) => `batch:${i}`);
const batch = await best(3, async () => {
  for (let r = 0; r < rounds; r++) {
    await storage.setItems(keys.map((key) => ({ key, value })));
    await storage.getItems(keys);
  }
  return rounds * 2000;
});
console.log(JSON.stringify({ case: "batches of 1000", subject, ...batch }));

await storage.clear();
await storage.dispose();
