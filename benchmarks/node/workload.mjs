// The workload of benchmarks/workload.py, written once for every node subject script.
export const value = { id: 1, name: "user-1", tags: ["a", "b"], score: 1.5 };
export const batchKeys = Array.from({ length: 1000 }, (_, i) => `batch:${i}`);

/** `n` setItem + getItem pairs of `value`; resolves to the operations done. */
export async function sequential(storage, n) {
  for (let i = 0; i < n; i++) {
    await storage.setItem(`user:${i}`, value);
    await storage.getItem(`user:${i}`);
  }
  return n * 2;
}

/** `rounds` of setItems + getItems over the 1000 keys of `batchKeys`. */
export async function batches(storage, rounds) {
  const items = batchKeys.map((key) => ({ key, value }));
  for (let r = 0; r < rounds; r++) {
    await storage.setItems(items);
    await storage.getItems(batchKeys);
  }
  return rounds * 2000;
}
