#!/usr/bin/env node
// A Node.js client of atpd: a reservation's whole life, with the protos loaded at run time.
//
// The protos come ONLY from the proto bundle (`make proto-bundle`: build/proto-bundle/),
// loaded with @grpc/proto-loader; nothing is generated. Every step checks what atpd answered;
// the exit code is 0 only if every step behaved as expected.
//
//   npm ci
//   node walkthrough.js [--target HOST:PORT] [--bundle DIR]
//
// --target: default $ATP_TARGET, else 127.0.0.1:50051 (plaintext). --bundle: default
// $ATP_PROTO_BUNDLE, else ../../build/proto-bundle. $ATP_TOKEN, when set, is sent as a bearer
// token. Ids carry a per-run suffix, so it runs on a ledger that already holds data.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const CALL_TIMEOUT_MS = 10000;
const WATCH_TIMEOUT_MS = 30000; // the watch replays the journal from its start (SKU-filtered)

function parseArgs(argv) {
  const options = {
    target: process.env.ATP_TARGET || '127.0.0.1:50051',
    bundle: process.env.ATP_PROTO_BUNDLE || path.resolve(__dirname, '..', '..', 'build', 'proto-bundle'),
  };
  for (let i = 0; i < argv.length; i += 1) {
    const [flag, inline] = argv[i].split(/=(.*)/s);
    const value = inline !== undefined ? inline : argv[++i];
    if (flag === '--target' && value) options.target = value;
    else if (flag === '--bundle' && value) options.bundle = path.resolve(value);
    else {
      console.error('usage: node walkthrough.js [--target HOST:PORT] [--bundle DIR]');
      process.exit(2);
    }
  }
  return options;
}

// --- Loading the protos from the bundle ------------------------------------------------------

const LOADER_OPTIONS = {
  keepCase: true, // field names as in the .proto files (reservation_id, not reservationId)
  longs: String, // int64/uint64 arrive as decimal strings (no precision lost)
  enums: String, // enum values as their names ('HELD', 'COMMITTED', ...)
  defaults: true, // unset fields present with their defaults
  oneofs: true, // a oneof's case as a virtual field (ReserveResult.result)
};

function loadApi(bundle) {
  if (!fs.existsSync(path.join(bundle, 'atp', 'v1'))) {
    throw new Error(`no proto bundle at ${bundle}: run \`make proto-bundle\` (or pass --bundle)`);
  }
  // Every atp.v1 file the bundle holds, plus health; their imports come from the same folder.
  const files = fs.readdirSync(path.join(bundle, 'atp', 'v1'))
    .filter((name) => name.endsWith('.proto'))
    .sort()
    .map((name) => `atp/v1/${name}`);
  files.push('grpc/health/v1/health.proto');
  const definition = protoLoader.loadSync(files, { ...LOADER_OPTIONS, includeDirs: [bundle] });
  return grpc.loadPackageDefinition(definition);
}

// The rich error model: a failed call's trailer `grpc-status-details-bin` is a serialized
// google.rpc.Status whose `details` are google.protobuf.Any (ErrorInfo, PreconditionFailure,
// BadRequest, ResourceInfo). proto-loader gives gRPC stubs, not message codecs, so these are
// decoded with protobufjs (the library proto-loader itself uses), from the same bundle.
function loadErrorTypes(bundle) {
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => (path.isAbsolute(target) ? target : path.join(bundle, target));
  root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: true });
  return root;
}

function richStatus(errorTypes, error) {
  const values = error.metadata ? error.metadata.get('grpc-status-details-bin') : [];
  if (!values.length) return null;
  const Status = errorTypes.lookupType('google.rpc.Status');
  const status = Status.decode(values[0]);
  const details = status.details.map((any) => {
    const typeName = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    const type = errorTypes.lookupType(typeName);
    return { type: typeName, ...type.toObject(type.decode(any.value), { longs: String, enums: String, defaults: true }) };
  });
  return { code: status.code, message: status.message, details };
}

// --- Calls -----------------------------------------------------------------------------------

function metadata() {
  const md = new grpc.Metadata();
  const token = (process.env.ATP_TOKEN || '').trim();
  if (token) md.set('authorization', `Bearer ${token}`);
  return md;
}

function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata(), { deadline: Date.now() + CALL_TIMEOUT_MS }, (error, reply) => {
      if (error) reject(error);
      else resolve(reply);
    });
  });
}

function serverStream(client, method, request, timeoutMs) {
  return new Promise((resolve, reject) => {
    const messages = [];
    const call = client[method](request, metadata(), { deadline: Date.now() + timeoutMs });
    call.on('data', (message) => messages.push(message));
    call.on('error', reject);
    call.on('end', () => resolve(messages));
  });
}

async function refused(promise) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new assert.AssertionError({ message: 'the call succeeded, but a refusal was expected' });
}

const isoDate = (date) => (date ? `${date.year}-${String(date.month).padStart(2, '0')}-${String(date.day).padStart(2, '0')}` : '-');

// --- The walkthrough -------------------------------------------------------------------------

async function walkthrough(options) {
  const api = loadApi(options.bundle);
  const errorTypes = loadErrorTypes(options.bundle);
  const v1 = api.atp.v1;
  const credentials = grpc.credentials.createInsecure();
  const health = new api.grpc.health.v1.Health(options.target, credentials);
  const inventory = new v1.Inventory(options.target, credentials);
  const availability = new v1.Availability(options.target, credentials);
  const reservations = new v1.Reservations(options.target, credentials);
  const events = new v1.Events(options.target, credentials);
  const clients = [health, inventory, availability, reservations, events];

  const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
  const node = `NODE-DC-${run}`;
  const sku = `NODE-SKU-${run}`;
  const order = `node-order-${run}`;
  const say = (step, text) => console.log(`${step.padEnd(12)} ${text}`);

  try {
    say('target', `${options.target} (protos from ${options.bundle})`);
    const serving = await unary(health, 'Check', { service: '' });
    assert.equal(serving.status, 'SERVING');
    say('health', serving.status);

    const upserted = await unary(inventory, 'UpsertNode', {
      node: { node_id: node, kind: 'DC', region: 'EU', handling_days: 1, lanes: [{ region: 'EU', transit_days: 2, cost: 5 }] },
    });
    assert.equal(upserted.node_id, node);
    assert.equal(upserted.active, true);
    say('upsert node', `${upserted.node_id} kind ${upserted.kind} lanes ${upserted.lanes.map((l) => `${l.region}:${l.transit_days}`).join(',')}`);

    const adjusted = await unary(inventory, 'AdjustStock', {
      request_id: `receipt-${run}`,
      movements: [{ sku, node_id: node, type: 'RECEIPT', quantity: 10, reason: 'node walkthrough' }],
    });
    assert.equal(adjusted.positions[0].on_hand, '10');
    say('adjust', `RECEIPT 10 ${sku}@${node}: on_hand ${adjusted.positions[0].on_hand}`);

    const before = await unary(availability, 'GetAvailability', { skus: [sku] });
    assert.equal(before.positions.length, 1);
    assert.equal(before.positions[0].available, '10');
    say('available', `${sku}@${node}: ${before.positions[0].available} (network ${before.totals[0].available})`);

    const promise = await unary(availability, 'Promise', {
      lines: [{ line_id: 'l1', sku, quantity: 3 }], destination_region: 'EU',
    });
    assert.equal(promise.complete, true);
    assert.equal(promise.lines[0].allocations[0].node_id, node);
    const allocation = promise.lines[0].allocations[0];
    say('promise', `3 units from ${allocation.node_id}, ship ${isoDate(allocation.ship_date)}, deliver ${isoDate(allocation.delivery_date)}, complete ${promise.complete}`);

    const reserveRequest = {
      reservation_id: order, lines: [{ line_id: 'l1', sku, quantity: 3 }], destination_region: 'EU', channel: 'node-example',
    };
    const reserved = await unary(reservations, 'Reserve', reserveRequest);
    assert.equal(reserved.state, 'HELD');
    assert.equal(reserved.lines[0].node_id, node);
    say('reserve', `${order} ${reserved.state} at ${reserved.lines[0].node_id}, promise date ${isoDate(reserved.promise_date)}`);

    const again = await unary(reservations, 'Reserve', reserveRequest);
    assert.equal(again.state, 'HELD');
    assert.deepEqual(again.create_time, reserved.create_time);
    const afterRetry = await unary(availability, 'GetAvailability', { skus: [sku] });
    assert.equal(afterRetry.positions[0].reserved, '3');
    say('reserve', `${order} again (same id, same request): same reservation, reserved still ${afterRetry.positions[0].reserved}`);

    const conflict = await refused(unary(reservations, 'Reserve', { ...reserveRequest, lines: [{ line_id: 'l1', sku, quantity: 4 }] }));
    assert.equal(conflict.code, grpc.status.ALREADY_EXISTS);
    say('reserve', `${order} with other lines: ${grpc.status[conflict.code]}`);

    const short = await refused(unary(reservations, 'Reserve', {
      reservation_id: `${order}-big`, lines: [{ line_id: 'l1', sku, quantity: 100 }], destination_region: 'EU',
    }));
    assert.equal(short.code, grpc.status.FAILED_PRECONDITION);
    const status = richStatus(errorTypes, short);
    assert.ok(status, 'no grpc-status-details-bin trailer on the refusal');
    assert.equal(status.code, grpc.status.FAILED_PRECONDITION);
    const errorInfo = status.details.find((d) => d.type === 'google.rpc.ErrorInfo');
    const precondition = status.details.find((d) => d.type === 'google.rpc.PreconditionFailure');
    assert.ok(errorInfo && precondition, `details: ${status.details.map((d) => d.type)}`);
    assert.equal(errorInfo.reason, 'INSUFFICIENT_AVAILABILITY');
    assert.ok(precondition.violations.length >= 1);
    say('over-reserve', `100 units: ${grpc.status[short.code]} reason ${errorInfo.reason} (domain ${errorInfo.domain})`);
    for (const violation of precondition.violations) {
      say('', `violation ${violation.type} ${violation.subject}: ${violation.description}`);
    }

    const committed = await unary(reservations, 'Commit', { reservation_id: order, request_id: `commit-${run}` });
    assert.equal(committed.state, 'COMMITTED');
    say('commit', `${order} ${committed.state}`);

    const fulfilled = await unary(reservations, 'Fulfill', { reservation_id: order, request_id: `ship-${run}` });
    assert.equal(fulfilled.state, 'FULFILLED');
    assert.equal(fulfilled.lines[0].fulfilled_quantity, '3');
    const after = await unary(availability, 'GetAvailability', { skus: [sku] });
    assert.equal(after.positions[0].on_hand, '7');
    assert.equal(after.positions[0].available, '7');
    say('fulfill', `${order} ${fulfilled.state}: on_hand ${after.positions[0].on_hand}, available ${after.positions[0].available}`);

    const journal = await serverStream(events, 'Watch', { after_sequence: 0, sku, stop_at_head: true }, WATCH_TIMEOUT_MS);
    const types = journal.map((event) => event.type);
    for (const expected of ['STOCK_MOVED', 'RESERVATION_CREATED', 'RESERVATION_COMMITTED', 'RESERVATION_FULFILLED']) {
      assert.ok(types.includes(expected), `no ${expected} event for ${sku}: ${types}`);
    }
    assert.equal(types.filter((type) => type === 'RESERVATION_CREATED').length, 1, 'the retried Reserve made a second reservation');
    say('events', `${journal.length} for ${sku} up to the head: ${journal.map((e) => `#${e.sequence} ${e.type}`).join(', ')}`);
  } finally {
    for (const client of clients) client.close();
  }
}

const options = parseArgs(process.argv.slice(2));
walkthrough(options).then(
  () => {
    console.log('ok: every step behaved as expected');
  },
  (error) => {
    console.error(`FAILED: ${error.message}`); // a gRPC error's message starts with its code
    process.exitCode = 1;
  },
);
