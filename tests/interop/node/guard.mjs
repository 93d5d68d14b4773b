// Loaded with `node --import`: refuses any connection that is not to loopback, so that no
// test can reach the real Entra ID (or anything else) by accident, and fails the run if one
// was attempted.
import net from "node:net";

const attempted = [];

function isLoopback(host) {
  if (host === undefined || host === null || host === "") return true;
  const name = String(host).replace(/^\[|\]$/g, "").toLowerCase();
  return (
    name === "localhost" ||
    name.endsWith(".localhost") ||
    name === "::1" ||
    /^127\.\d+\.\d+\.\d+$/.test(name)
  );
}

const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function guardedConnect(...args) {
  const options = typeof args[0] === "object" && args[0] !== null ? args[0] : { port: args[0], host: args[1] };
  if (!options.path && !isLoopback(options.host)) {
    attempted.push(`${options.host}:${options.port}`);
    throw new Error(`interop guard: ${options.host} is not loopback`);
  }
  return connect.apply(this, args);
};

process.on("exit", (code) => {
  if (attempted.length > 0) {
    process.stderr.write(`interop guard: non-loopback connections were attempted: ${attempted.join(", ")}\n`);
    if (code === 0) process.exitCode = 1;
  }
});
