// unstorage's fs driver, timed the same way as benchmarks/bench_fs.py.
// Usage: node fs.mjs <dir> [sequential]. Prints one JSON line per result:
// {"case", "subject", "ops", "seconds"}.
import { rmSync } from "node:fs";
import { createStorage } from "unstorage";
import fsDriver from "unstorage/drivers/fs";
import { best } from "./timing.mjs";

const dir = process.argv[2];
const sequential = Number(process.argv[3] ?? 5000);
const value = { id: 1, name: "user-1", tags: ["a", "b"], score: 1.5 };

const storage = createStorage({ driver: fsDriver({ base: dir }) });
const seq = await best(
  3,
  async () => {
    for (let i = 0; i < sequential; i++) {
      await storage.setItem(`user:${i}`, value);
      await storage.getItem(`user:${i}`);
    }
    return sequential * 2;
  },
  () => rmSync(dir, { recursive: true, force: true }),
);
console.log(JSON.stringify({ case: "sequential set+get", subject: "unstorage fs (node)", ...seq }));
await storage.dispose();
rmSync(dir, { recursive: true, force: true });
