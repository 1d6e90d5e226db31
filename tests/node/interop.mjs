// unstorage (from npm) against unistorage, in both directions. Driven by tests/test_unstorage_interop.py.
//
//   node interop.mjs client URL [TOKEN]  unstorage's http driver uses the unistorage server at URL:
//                                        reads the py:* keys Python wrote, writes node:* keys for
//                                        Python to read back, and checks every operation.
//   node interop.mjs serve PORT          unstorage's own storage server (memory driver) on PORT,
//                                        for unistorage's http driver; prints "listening" when up.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { createStorage } from "unstorage";
import httpDriver from "unstorage/drivers/http";
import memoryDriver from "unstorage/drivers/memory";
import { createStorageServer } from "unstorage/server";

const [mode, target, token] = process.argv.slice(2);

async function client(base) {
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  const driver = httpDriver({ base, headers });
  const storage = createStorage({ driver });
  const checks = [];
  const check = async (name, body) => {
    await body();
    checks.push(name);
  };

  // What Python stored through unistorage, read by unstorage.
  await check("reads a string Python stored", async () => {
    assert.equal(await storage.getItem("py:str"), "from python");
  });
  await check("reads an object Python stored", async () => {
    assert.deepEqual(await storage.getItem("py:obj"), { a: 1, list: [1, "two", null] });
  });
  await check("reads raw bytes Python stored", async () => {
    const raw = await storage.getItemRaw("py:bin");
    assert.deepEqual(Buffer.from(raw), Buffer.from([0, 1, 2, 254, 255]));
  });
  await check("lists Python's keys under a base", async () => {
    assert.deepEqual((await storage.getKeys("py")).sort(), ["py:bin", "py:obj", "py:str"]);
  });

  // unstorage's writes, each read back by unstorage (Python reads them afterwards too).
  await check("string round trip", async () => {
    await storage.setItem("node:str", "hello from node");
    assert.equal(await storage.getItem("node:str"), "hello from node");
  });
  await check("object round trip", async () => {
    await storage.setItem("node:obj", { n: 42, nested: { ok: true } });
    assert.deepEqual(await storage.getItem("node:obj"), { n: 42, nested: { ok: true } });
  });
  await check("number round trip", async () => {
    await storage.setItem("node:num", 42);
    assert.equal(await storage.getItem("node:num"), 42);
  });
  await check("raw round trip", async () => {
    await storage.setItemRaw("node:bin", new Uint8Array([9, 8, 7, 0, 255]));
    assert.deepEqual(Buffer.from(await storage.getItemRaw("node:bin")), Buffer.from([9, 8, 7, 0, 255]));
  });
  await check("keys with spaces and unicode", async () => {
    await storage.setItem("node:odd key:été", "odd");
    assert.equal(await storage.getItem("node:odd key:été"), "odd");
  });
  await check("hasItem and missing keys", async () => {
    assert.equal(await storage.hasItem("node:str"), true);
    assert.equal(await storage.hasItem("node:absent"), false);
    assert.equal(await storage.getItem("node:absent"), null);
  });
  await check("meta: mtime and ttl", async () => {
    await storage.setItem("node:ttl", "short-lived", { ttl: 60 });
    const meta = await storage.getMeta("node:ttl");
    assert.ok(meta.mtime instanceof Date && !Number.isNaN(meta.mtime.getTime()));
    assert.ok(meta.ttl > 0 && meta.ttl <= 60, `ttl ${meta.ttl}`);
  });
  await check("getKeys of a base", async () => {
    await storage.setItem("node:dir:a", 1);
    await storage.setItem("node:dir:b:c", 2);
    assert.deepEqual((await storage.getKeys("node:dir")).sort(), ["node:dir:a", "node:dir:b:c"]);
  });
  await check("removeItem", async () => {
    await storage.setItem("node:gone", "x");
    await storage.removeItem("node:gone");
    assert.equal(await storage.hasItem("node:gone"), false);
  });
  await check("clear a base", async () => {
    // unstorage's storage.clear(base) only reaches drivers mounted at or under base, so a
    // root-mounted driver is asked directly: DELETE base/: is what clearing a base sends.
    await driver.clear("node:dir");
    assert.deepEqual(await storage.getKeys("node:dir"), []);
    assert.equal(await storage.getItem("node:str"), "hello from node");
  });
  console.log(JSON.stringify({ ok: true, checks }));
}

function serve(port) {
  const storage = createStorage({ driver: memoryDriver() });
  const server = createServer(createStorageServer(storage).handle);
  server.listen(Number(port), "127.0.0.1", () => console.log("listening"));
  process.on("SIGTERM", () => server.close(() => process.exit(0)));
}

if (mode === "client") {
  client(target).catch((error) => {
    console.error(error?.stack ?? String(error));
    process.exit(1);
  });
} else if (mode === "serve") {
  serve(target);
} else {
  console.error("usage: node interop.mjs client URL [TOKEN] | serve PORT");
  process.exit(2);
}
