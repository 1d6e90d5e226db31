// unstorage's memory driver, timed the same way as benchmarks/bench_memory.py.
// Prints one JSON line per result: {"case", "subject", "ops", "seconds"}.
import { createStorage } from "unstorage";
import memoryDriver from "unstorage/drivers/memory";
import { best } from "./timing.mjs";

const value = { id: 1, name: "user-1", tags: ["a", "b"], score: 1.5 };
const sequential = Number(process.argv[2] ?? 20000);
const rounds = Number(process.argv[3] ?? 20);

const storage = createStorage({ driver: memoryDriver() });

const seq = await best(3, async () => {
  for (let i = 0; i < sequential; i++) {
    await storage.setItem(`user:${i}`, value);
    await storage.getItem(`user:${i}`);
  }
  return sequential * 2;
});
console.log(JSON.stringify({ case: "sequential set+get", subject: "unstorage memory (node)", ...seq }));

const keys = Array.from({ length: 1000 }, (_, i) => `batch:${i}`);
const batch = await best(3, async () => {
  for (let r = 0; r < rounds; r++) {
    await storage.setItems(keys.map((key) => ({ key, value })));
    await storage.getItems(keys);
  }
  return rounds * 2000;
});
console.log(JSON.stringify({ case: "batches of 1000", subject: "unstorage memory (node)", ...batch }));
