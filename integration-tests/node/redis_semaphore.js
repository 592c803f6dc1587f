// redis-semaphore, unmodified, against lockstep: every class (Mutex,
// Semaphore, MultiSemaphore and their Redlock variants) under contention,
// with a check that no more holders are ever inside than the class allows.
//
//   node redis_semaphore.js PORT
//
// Every class gets a client of the first port (the tests pass a
// follower). The Redlock variants get that one client too: a lockstep
// cluster is one replicated keyspace, so its nodes are not the
// independent servers Redlock takes a majority of (three clients of one
// cluster would each see the others' keys and never reach a quorum).
'use strict';

const assert = require('assert');
const Redis = require('ioredis');
const {
  Mutex,
  Semaphore,
  MultiSemaphore,
  RedlockMutex,
  RedlockSemaphore,
  RedlockMultiSemaphore,
} = require('redis-semaphore');

const ports = process.argv.slice(2).map(Number);
assert(ports.length >= 1, 'usage: node redis_semaphore.js PORT');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const clients = [];
function client(port) {
  const redis = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 3, lazyConnect: false });
  clients.push(redis);
  return redis;
}

const options = { lockTimeout: 5000, acquireTimeout: 20000, retryInterval: 10, refreshInterval: 1000 };

// Runs `workers` loops of `rounds` critical sections, each holding a lock
// made by `make()` and occupying `weight` of `capacity` while inside.
async function contend(label, make, { workers, rounds, weight, capacity }) {
  let inside = 0;
  let most = 0;
  let sections = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      for (let round = 0; round < rounds; round++) {
        const lock = make();
        await lock.acquire();
        inside += weight;
        most = Math.max(most, inside);
        assert(inside <= capacity, `${label}: ${inside} held, capacity ${capacity}`);
        await sleep(2);
        inside -= weight;
        sections += 1;
        await lock.release();
      }
    }),
  );
  assert.strictEqual(sections, workers * rounds);
  console.log(`${label}: ${sections} sections, at most ${most} of ${capacity} held at once`);
  return most;
}

async function main() {
  const redis = client(ports[0]);
  const all = [redis];
  const tag = `${process.pid}-${Date.now()}`;

  // Mutex: exclusive, tryAcquire fails while held, succeeds after release.
  const first = new Mutex(redis, `mutex:${tag}`, options);
  await first.acquire();
  const second = new Mutex(redis, `mutex:${tag}`, { ...options, acquireTimeout: 200 });
  assert.strictEqual(await second.tryAcquire(), false, 'mutex granted twice');
  await first.release();
  assert.strictEqual(await second.tryAcquire(), true, 'mutex not granted after release');
  await second.release();
  console.log('Mutex: exclusive, released');

  await contend('Mutex', () => new Mutex(redis, `mutex-c:${tag}`, options), {
    workers: 6, rounds: 8, weight: 1, capacity: 1,
  });

  // A holder that keeps refreshing keeps the lock past its timeout.
  const kept = new Mutex(redis, `mutex-r:${tag}`, { ...options, lockTimeout: 800, refreshInterval: 200 });
  await kept.acquire();
  await sleep(2000);
  const intruder = new Mutex(redis, `mutex-r:${tag}`, { ...options, acquireTimeout: 100 });
  assert.strictEqual(await intruder.tryAcquire(), false, 'a refreshed mutex was lost');
  await kept.release();
  // A holder that stops refreshing loses it when its timeout runs out.
  const lapsing = new Mutex(redis, `mutex-l:${tag}`, { ...options, lockTimeout: 500, refreshInterval: 0 });
  await lapsing.acquire();
  await sleep(900);
  const successor = new Mutex(redis, `mutex-l:${tag}`, { ...options, acquireTimeout: 2000 });
  assert.strictEqual(await successor.tryAcquire(), true, 'an expired mutex was not granted');
  await successor.release();
  console.log('Mutex: refreshed holder keeps it, a lapsed one loses it');

  const semaphoreMost = await contend('Semaphore', () => new Semaphore(redis, `sem:${tag}`, 3, options), {
    workers: 8, rounds: 6, weight: 1, capacity: 3,
  });
  assert(semaphoreMost >= 2, 'the semaphore never let two holders in');
  await contend('MultiSemaphore', () => new MultiSemaphore(redis, `msem:${tag}`, 4, 2, options), {
    workers: 6, rounds: 6, weight: 2, capacity: 4,
  });

  await contend('RedlockMutex', () => new RedlockMutex(all, `rmutex:${tag}`, options), {
    workers: 4, rounds: 5, weight: 1, capacity: 1,
  });
  await contend('RedlockSemaphore', () => new RedlockSemaphore(all, `rsem:${tag}`, 2, options), {
    workers: 5, rounds: 4, weight: 1, capacity: 2,
  });
  await contend(
    'RedlockMultiSemaphore',
    () => new RedlockMultiSemaphore(all, `rmsem:${tag}`, 4, 2, options),
    { workers: 4, rounds: 4, weight: 2, capacity: 4 },
  );
  console.log('all redis-semaphore checks passed');
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => clients.forEach((c) => c.disconnect()));
