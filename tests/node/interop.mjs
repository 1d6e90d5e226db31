// unstorage (from npm) against unistorage, in both directions. Driven by tests/test_unstorage_interop.py.
//
//   node interop.mjs client URL [TOKEN]  unstorage's http driver uses the unistorage server at URL:
//                                        reads the py:* keys Python wrote, writes node:* keys for
//                                        Python to read back, and checks every operation.
//   node interop.mjs serve PORT          unstorage's own storage server (memory driver) on PORT,
//                                        for unistorage's http driver; prints "listening" when up.
//
// UNSTORAGE_MAJOR=2 in the environment uses unstorage 2 (installed as the npm alias "unstorage2")
// instead of unstorage 1.
import assert from "node:assert/strict";
import { createServer } from "node:http";

const major = process.env.UNSTORAGE_MAJOR === "2" ? 2 : 1;
const pkg = major === 2 ? "unstorage2" : "unstorage";
const { createStorage } = await import(pkg);
const httpDriver = (await import(`${pkg}/drivers/http`)).default;
const memoryDriver = (await import(`${pkg}/drivers/memory`)).default;
const server = await import(`${pkg}/server`);

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
  await check("a string read raw is its text, as from unstorage's own server", async () => {
    const raw = await storage.getItemRaw("node:str");
    assert.equal(Buffer.from(raw).toString("utf8"), "hello from node");
  });
  await check("a missing key's error body has this unstorage's fields", async () => {
    const response = await fetch(`${base}/node/absent`, { headers });
    assert.equal(response.status, 404);
    const body = await response.json();
    const [status, text] = major === 2 ? ["status", "statusText"] : ["statusCode", "statusMessage"];
    assert.equal(body[status], 404);
    assert.equal(body[text], "KV value not found");
  });
  await check("clear a base", async () => {
    // unstorage's storage.clear(base) only reaches drivers mounted at or under base, so a
    // root-mounted driver is asked directly: DELETE base/: is what clearing a base sends.
    await driver.clear("node:dir");
    assert.deepEqual(await storage.getKeys("node:dir"), []);
    assert.equal(await storage.getItem("node:str"), "hello from node");
  });
  console.log(JSON.stringify({ ok: true, major, checks }));
}

// unstorage 2's server is a fetch handler (Request in, Response out): node:http carries it.
function nodeListener(handle) {
  return async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = req.method === "GET" || req.method === "HEAD" ? undefined : Buffer.concat(chunks);
    const request = new Request(`http://${req.headers.host}${req.url}`, {
      method: req.method,
      headers: req.headers,
      body,
    });
    const response = await handle(request);
    res.writeHead(response.status, response.statusText, [...response.headers].flat());
    res.end(req.method === "HEAD" ? undefined : Buffer.from(await response.arrayBuffer()));
  };
}

function serve(port) {
  const storage = createStorage({ driver: memoryDriver() });
  const listener =
    major === 2
      ? nodeListener(server.createStorageHandler(storage))
      : server.createStorageServer(storage).handle;
  const http = createServer(listener);
  http.listen(Number(port), "127.0.0.1", () => console.log("listening"));
  process.on("SIGTERM", () => http.close(() => process.exit(0)));
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
