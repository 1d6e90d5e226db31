// unstorage's own HTTP server (createStorageServer: h3 on node:http) over memory or sqlite,
// for benchmarks/bench_server.py. Usage: node server.mjs <port> memory|sqlite [sqlite path].
// SQLite goes through unstorage's db0 driver on better-sqlite3, in WAL mode with
// synchronous=NORMAL, as unistorage's sqlite driver opens its file. Prints "listening".
import { createServer } from "node:http";
import { createStorage } from "unstorage";
import memoryDriver from "unstorage/drivers/memory";
import { createStorageServer } from "unstorage/server";

const [port, kind, path] = process.argv.slice(2);

async function driver() {
  if (kind === "memory") return memoryDriver();
  const { createDatabase } = await import("db0");
  const { default: sqlite } = await import("db0/connectors/better-sqlite3");
  const { default: db0Driver } = await import("unstorage/drivers/db0");
  const database = createDatabase(sqlite({ path }));
  await database.exec("PRAGMA journal_mode = WAL");
  await database.exec("PRAGMA synchronous = NORMAL");
  return db0Driver({ database, tableName: "kv" });
}

console.warn = () => {}; // db0's "experimental" notice
const storage = createStorage({ driver: await driver() });
const server = createServer(createStorageServer(storage).handle);
server.keepAliveTimeout = 60_000;
server.listen(Number(port), "127.0.0.1", () => console.log("listening"));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
