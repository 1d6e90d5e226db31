// unstorage's s3 driver (aws4fetch over fetch): the rounds of benchmarks/bench_s3.py, against
// moto directly and through the latency proxy. Args: {"direct": url, "proxied": url} as JSON,
// the bucket, the sequential loop's key counts (direct, proxied) and the batch size.
import { createStorage } from "unstorage";
import s3Driver from "unstorage/drivers/s3";
import { value } from "./workload.mjs";

export async function setup([endpoints, bucket, direct, proxied, batch]) {
  const storages = {};
  for (const [where, endpoint] of Object.entries(JSON.parse(endpoints))) {
    const driver = s3Driver({
      accessKeyId: "testing",
      secretAccessKey: "testing",
      endpoint,
      bucket,
      region: "us-east-1",
    });
    storages[where] = createStorage({ driver });
  }
  const pick = (where) => storages[where === "direct" ? "direct" : "proxied"];
  const keys = (count, prefix) => Array.from({ length: count }, (_, i) => `node-${prefix}:${i}`);
  return {
    cases: {
      sequential: async ({ where }) => {
        const storage = pick(where);
        const list = keys(Number(where === "direct" ? direct : proxied), "seq");
        for (const key of list) await storage.setItem(key, value);
        for (const key of list) await storage.getItem(key);
        return list.length * 2;
      },
      batches: async ({ where }) => {
        const storage = pick(where);
        const list = keys(Number(batch), "batch");
        await storage.setItems(list.map((key) => ({ key, value })));
        await storage.getItems(list);
        return list.length * 2;
      },
    },
  };
}
