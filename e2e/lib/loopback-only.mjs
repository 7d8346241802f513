// Preloaded (`node --import`) into a third-party server that listens on a port alone, which means
// every interface (server-everything's Streamable HTTP transport: `app.listen(PORT)`): a TCP
// listen that names no host gets 127.0.0.1, so the server is reachable on loopback only. Nothing
// else in the server changes. .ci/e2e.sh uses it for the gateway suite's HTTP upstream.
import net from 'node:net';

const listen = net.Server.prototype.listen;

net.Server.prototype.listen = function listenOnLoopback(...args) {
  const [first, second] = args;
  // listen(port[, backlog][, callback]): no host given.
  if ((typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) && typeof second !== 'string') {
    return listen.call(this, Number(first), '127.0.0.1', ...args.slice(1));
  }
  // listen({ port, ... }) without host or path.
  if (first && typeof first === 'object' && 'port' in first && first.host === undefined && first.path === undefined) {
    return listen.call(this, { ...first, host: '127.0.0.1' }, ...args.slice(1));
  }
  return listen.apply(this, args);
};
