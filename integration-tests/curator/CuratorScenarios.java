// Apache Curator's recipes against a lockstep cluster, unmodified: every
// recipe runs once, then again while and after the test kills the raft
// leader (the program prints "KILL" and waits for a line on stdin).
// Each check throws on failure; the last line is "curator ok".

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.barriers.DistributedDoubleBarrier;
import org.apache.curator.framework.recipes.cache.CuratorCache;
import org.apache.curator.framework.recipes.cache.CuratorCacheListener;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.leader.LeaderSelector;
import org.apache.curator.framework.recipes.leader.LeaderSelectorListenerAdapter;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.locks.InterProcessSemaphoreV2;
import org.apache.curator.framework.recipes.locks.Lease;
import org.apache.curator.framework.recipes.nodes.PersistentNode;
import org.apache.curator.framework.recipes.shared.SharedCount;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.zookeeper.CreateMode;

public class CuratorScenarios {
    static String connect;
    static final List<CuratorFramework> clients = new ArrayList<>();

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new IllegalStateException("check failed: " + what);
        }
    }

    static CuratorFramework client() throws Exception {
        CuratorFramework c = CuratorFrameworkFactory.builder()
                .connectString(connect)
                .sessionTimeoutMs(15000)
                .connectionTimeoutMs(5000)
                .retryPolicy(new ExponentialBackoffRetry(100, 29, 2000))
                .build();
        c.start();
        check(c.blockUntilConnected(30, TimeUnit.SECONDS), "connected");
        clients.add(c);
        return c;
    }

    interface Body<T> {
        void run(T item) throws Exception;
    }

    /** Runs `body` once per item, each on its own thread; fails with every error. */
    static <T> void parallel(String what, List<T> items, Body<T> body) throws Exception {
        ConcurrentLinkedQueue<Throwable> errors = new ConcurrentLinkedQueue<>();
        List<Thread> threads = new ArrayList<>();
        for (T item : items) {
            threads.add(new Thread(() -> {
                try {
                    body.run(item);
                } catch (Throwable e) {
                    errors.add(e);
                }
            }));
        }
        threads.forEach(Thread::start);
        for (Thread t : threads) {
            t.join();
        }
        check(errors.isEmpty(), what + " errors: " + errors);
    }

    static void log(String line) {
        System.out.println(line);
        System.out.flush();
    }

    /** Threads on their own clients take one mutex in turn; never two inside. */
    static void mutex(String round, int threads, int each) throws Exception {
        List<CuratorFramework> own = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            own.add(client());
        }
        log(round + " mutex " + mutex(own, each));
    }

    /** Cycles of one mutex, one thread per client; returns how many ran. */
    static int mutex(List<CuratorFramework> own, int each) throws Exception {
        AtomicInteger inside = new AtomicInteger();
        AtomicInteger total = new AtomicInteger();
        parallel("mutex", own, c -> {
            InterProcessMutex lock = new InterProcessMutex(c, "/curator/mutex");
            for (int i = 0; i < each; i++) {
                check(lock.acquire(60, TimeUnit.SECONDS), "mutex acquired");
                try {
                    check(inside.incrementAndGet() == 1, "one mutex holder");
                    Thread.sleep(2);
                    total.incrementAndGet();
                    inside.decrementAndGet();
                } finally {
                    lock.release();
                }
            }
        });
        check(total.get() == own.size() * each, "every mutex cycle ran");
        return total.get();
    }

    /** At most two leases of a semaphore at once, every thread served. */
    static void semaphore(String round) throws Exception {
        AtomicInteger inside = new AtomicInteger();
        AtomicInteger most = new AtomicInteger();
        AtomicInteger served = new AtomicInteger();
        List<InterProcessSemaphoreV2> semaphores = new ArrayList<>();
        for (int t = 0; t < 4; t++) {
            semaphores.add(new InterProcessSemaphoreV2(client(), "/curator/semaphore", 2));
        }
        parallel("semaphore", semaphores, sem -> {
            for (int i = 0; i < 3; i++) {
                Lease lease = sem.acquire(60, TimeUnit.SECONDS);
                check(lease != null, "semaphore lease");
                int now = inside.incrementAndGet();
                most.accumulateAndGet(now, Math::max);
                check(now <= 2, "at most two leases");
                Thread.sleep(20);
                inside.decrementAndGet();
                sem.returnLease(lease);
                served.incrementAndGet();
            }
        });
        check(served.get() == 12, "every semaphore acquire served");
        log(round + " semaphore most " + most.get());
    }

    static int leaders(List<LeaderLatch> latches) {
        int n = 0;
        for (LeaderLatch l : latches) {
            if (l.hasLeadership()) {
                n++;
            }
        }
        return n;
    }

    /** Three latches: one leader; when it closes, another takes over. */
    static List<LeaderLatch> latches(String round) throws Exception {
        List<LeaderLatch> latches = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            LeaderLatch latch = new LeaderLatch(client(), "/curator/latch-" + round, "latch-" + i);
            latch.start();
            latches.add(latch);
        }
        long until = System.currentTimeMillis() + 30000;
        while (leaders(latches) != 1 && System.currentTimeMillis() < until) {
            Thread.sleep(20);
        }
        check(leaders(latches) == 1, "one latch leader");
        LeaderLatch first = latches.stream().filter(LeaderLatch::hasLeadership).findFirst().get();
        String id = first.getId();
        check(first.getLeader().getId().equals(id), "everyone sees the leader");
        first.close();
        latches.remove(first);
        until = System.currentTimeMillis() + 30000;
        while (leaders(latches) != 1 && System.currentTimeMillis() < until) {
            Thread.sleep(20);
        }
        check(leaders(latches) == 1, "a new latch leader");
        log(round + " latch " + id + " then " + latches.stream()
                .filter(LeaderLatch::hasLeadership).findFirst().get().getId());
        return latches;
    }

    /** Three selectors lead in turn, never two at once, each at least once. */
    static void selectors(String round) throws Exception {
        AtomicInteger leading = new AtomicInteger();
        AtomicInteger turns = new AtomicInteger();
        AtomicBoolean overlap = new AtomicBoolean();
        CountDownLatch everyone = new CountDownLatch(3);
        List<LeaderSelector> selectors = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            AtomicBoolean led = new AtomicBoolean();
            LeaderSelector s = new LeaderSelector(client(), "/curator/selector-" + round,
                    new LeaderSelectorListenerAdapter() {
                        @Override
                        public void takeLeadership(CuratorFramework c) throws Exception {
                            if (leading.incrementAndGet() != 1) {
                                overlap.set(true);
                            }
                            Thread.sleep(50);
                            turns.incrementAndGet();
                            leading.decrementAndGet();
                            if (led.compareAndSet(false, true)) {
                                everyone.countDown();
                            }
                        }
                    });
            s.autoRequeue();
            s.start();
            selectors.add(s);
        }
        check(everyone.await(60, TimeUnit.SECONDS), "every selector led");
        selectors.forEach(LeaderSelector::close);
        check(!overlap.get(), "one selector leading at a time");
        log(round + " selector turns " + turns.get());
    }

    /** Three members enter together and leave together. */
    static void barrier(String round) throws Exception {
        AtomicInteger entered = new AtomicInteger();
        List<DistributedDoubleBarrier> members = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            members.add(new DistributedDoubleBarrier(client(), "/curator/barrier-" + round, 3));
        }
        parallel("barrier", members, b -> {
            check(b.enter(60, TimeUnit.SECONDS), "barrier entered");
            check(entered.incrementAndGet() <= 3, "three members");
            check(b.leave(60, TimeUnit.SECONDS), "barrier left");
        });
        check(entered.get() == 3, "all entered");
        log(round + " barrier");
    }

    /** Compare-and-set increments from three clients add up. */
    static void sharedCount(String round) throws Exception {
        List<SharedCount> counts = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            SharedCount c = new SharedCount(client(), "/curator/count", 0);
            c.start();
            counts.add(c);
        }
        int start = counts.get(0).getCount();
        parallel("shared count", counts, c -> {
            for (int i = 0; i < 10; i++) {
                while (true) {
                    var v = c.getVersionedValue();
                    if (c.trySetCount(v, v.getValue() + 1)) {
                        break;
                    }
                }
            }
        });
        long until = System.currentTimeMillis() + 30000;
        while (counts.get(0).getCount() != start + 30 && System.currentTimeMillis() < until) {
            Thread.sleep(20);
        }
        check(counts.get(0).getCount() == start + 30, "count " + counts.get(0).getCount() + " from " + start);
        for (SharedCount c : counts) {
            c.close();
        }
        log(round + " count " + (start + 30));
    }

    static void await(ConcurrentLinkedQueue<String> seen, String event) throws Exception {
        long until = System.currentTimeMillis() + 30000;
        while (System.currentTimeMillis() < until && !seen.contains(event)) {
            Thread.sleep(10);
        }
        check(seen.contains(event), "cache saw " + seen + ", not " + event);
    }

    /** A cache on a subtree sees another client's create, change and delete. */
    static CuratorCache cache(String round, CuratorFramework writer) throws Exception {
        String root = "/curator/cache-" + round;
        writer.create().creatingParentsIfNeeded().forPath(root, new byte[0]);
        ConcurrentLinkedQueue<String> seen = new ConcurrentLinkedQueue<>();
        CountDownLatch initialized = new CountDownLatch(1);
        CuratorCache cache = CuratorCache.build(client(), root);
        cache.listenable().addListener(CuratorCacheListener.builder()
                .forCreates(n -> seen.add("create " + n.getPath() + " " + new String(n.getData(), StandardCharsets.UTF_8)))
                .forChanges((a, b) -> seen.add("change " + b.getPath() + " " + new String(b.getData(), StandardCharsets.UTF_8)))
                .forDeletes(n -> seen.add("delete " + n.getPath()))
                .forInitialized(initialized::countDown)
                .build());
        cache.start();
        check(initialized.await(30, TimeUnit.SECONDS), "cache initialized");
        // One change at a time: a cache that reads a node after two changes
        // reports only the second, as it may with ZooKeeper.
        writer.create().forPath(root + "/a", "1".getBytes(StandardCharsets.UTF_8));
        await(seen, "create " + root + "/a 1");
        writer.setData().forPath(root + "/a", "2".getBytes(StandardCharsets.UTF_8));
        await(seen, "change " + root + "/a 2");
        writer.create().forPath(root + "/b", "3".getBytes(StandardCharsets.UTF_8));
        await(seen, "create " + root + "/b 3");
        writer.delete().forPath(root + "/a");
        await(seen, "delete " + root + "/a");
        check(cache.get(root + "/b").isPresent() && cache.get(root + "/a").isEmpty(), "cache contents");
        log(round + " cache");
        return cache;
    }

    /** An ephemeral PersistentNode comes back after another client deletes it. */
    static PersistentNode persistentNode(String round, CuratorFramework other) throws Exception {
        String path = "/curator/node-" + round;
        PersistentNode node = new PersistentNode(client(), CreateMode.EPHEMERAL, false, path,
                "here".getBytes(StandardCharsets.UTF_8));
        node.start();
        check(node.waitForInitialCreate(30, TimeUnit.SECONDS), "persistent node created");
        check(other.checkExists().forPath(path).getEphemeralOwner() != 0, "it is ephemeral");
        other.delete().forPath(path);
        long until = System.currentTimeMillis() + 30000;
        while (other.checkExists().forPath(path) == null && System.currentTimeMillis() < until) {
            Thread.sleep(20);
        }
        check(other.checkExists().forPath(path) != null, "persistent node came back");
        log(round + " persistent node");
        return node;
    }

    static void round(String round, CuratorFramework admin) throws Exception {
        mutex(round, 4, 10);
        semaphore(round);
        latches(round).forEach(l -> {
            try {
                l.close();
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        });
        selectors(round);
        barrier(round);
        sharedCount(round);
        cache(round, admin).close();
        persistentNode(round, admin).close();
    }

    public static void main(String[] args) throws Exception {
        connect = args[0];
        CuratorFramework admin = client();
        round("before", admin);
        // Recipes that live across the kill: a latch leader, a cache, an
        // ephemeral node, and mutex traffic while the leader goes.
        List<LeaderLatch> latches = latches("across");
        CuratorCache cache = cache("across", admin);
        PersistentNode node = persistentNode("across", admin);
        AtomicBoolean stop = new AtomicBoolean();
        ConcurrentLinkedQueue<Throwable> errors = new ConcurrentLinkedQueue<>();
        AtomicInteger cycles = new AtomicInteger();
        List<CuratorFramework> traffic_clients = List.of(client(), client(), client());
        Thread traffic = new Thread(() -> {
            try {
                while (!stop.get()) {
                    cycles.addAndGet(mutex(traffic_clients, 3));
                }
            } catch (Throwable e) {
                errors.add(e);
            }
        });
        traffic.start();
        log("KILL");
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        check(in.readLine() != null, "the test killed the leader");
        Thread.sleep(3000);
        stop.set(true);
        traffic.join();
        check(errors.isEmpty(), "mutex traffic across the kill: " + errors);
        log("during mutex " + cycles.get());
        check(leaders(latches) == 1, "one latch leader after the kill");
        check(admin.checkExists().forPath("/curator/node-across") != null, "the ephemeral survived");
        admin.create().forPath("/curator/cache-across/after", "4".getBytes(StandardCharsets.UTF_8));
        long until = System.currentTimeMillis() + 30000;
        while (cache.get("/curator/cache-across/after").isEmpty() && System.currentTimeMillis() < until) {
            Thread.sleep(20);
        }
        check(cache.get("/curator/cache-across/after").isPresent(), "the cache follows after the kill");
        round("after", admin);
        node.close();
        cache.close();
        for (LeaderLatch l : latches) {
            l.close();
        }
        for (CuratorFramework c : clients) {
            c.close();
        }
        log("curator ok");
        System.exit(0);
    }
}
