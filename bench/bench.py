"""Lifeboat vs pgBackRest vs pg_basebackup vs Barman on the same pgbench data, in one run.

Every tool gets the same cluster, zstd level 3 (then lz4) and 4 parallel processes where it has them.
Figures: wall time, throughput of PGDATA, peak RSS (wait4 of the tool's process tree), repository
bytes; backup data and archived WAL added by 1% and 10% row churn; restore time; point-in-time
restore to a started, promoted server; WAL archiving lag under pgbench; the machine's floor (dd, zstd -b).
"""
import argparse, datetime, json, os, platform, pwd, re, shutil, socket, statistics, subprocess, sys, tempfile, time

BIN = "/usr/lib/postgresql/15/bin"
# A segment is archived when it has no .ready status and either its .done status or, recycled by a
# later checkpoint, no file at all (PostgreSQL never removes a segment before it is archived).
ARCHIVED = "NOT EXISTS (SELECT 1 FROM pg_ls_archive_statusdir() WHERE name = '{seg}.ready') AND (EXISTS (SELECT 1 FROM pg_ls_archive_statusdir() WHERE name = '{seg}.done') OR NOT EXISTS (SELECT 1 FROM pg_ls_waldir() WHERE name = '{seg}'))"
ROOT = os.geteuid() == 0
PGUSER = pwd.getpwnam("postgres") if ROOT else pwd.getpwuid(os.geteuid())


def as_pg(cmd):
    return (["setpriv", f"--reuid={PGUSER.pw_uid}", f"--regid={PGUSER.pw_gid}", "--clear-groups", "--"] + cmd) if ROOT else cmd


def env_pg(extra=None):
    e = dict(os.environ, HOME="/tmp", USER=PGUSER.pw_name, LOGNAME=PGUSER.pw_name)
    e.update(extra or {})
    return e


def run(cmd, user=True, env=None, check=True, capture=True):
    """Runs a command; returns (seconds, peak RSS in KiB of its process tree, stdout)."""
    full = as_pg(cmd) if user else cmd
    start = time.monotonic()
    p = subprocess.Popen(full, stdout=subprocess.PIPE if capture else subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/",
                         env=env or env_pg())
    out, err = p.communicate() if capture else (b"", p.stderr.read())
    # communicate() reaps via waitpid; use resource of children for the peak instead.
    seconds = time.monotonic() - start
    if check and p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{err.decode()[-2000:]}")
    return seconds, out.decode() if out else ""


def run_rss(cmd, env=None):
    """Runs a command and returns (seconds, peak RSS MiB of it and its descendants)."""
    start = time.monotonic()
    p = subprocess.Popen(as_pg(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/", env=env or env_pg())
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.monotonic() - start
    err = p.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{err[-2000:]}")
    return seconds, usage.ru_maxrss / 1024.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def du(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except FileNotFoundError:
                pass
    return total


def empty_dir(path):
    """A new data directory for a restore, owned by the server's user."""
    os.makedirs(path, mode=0o700)
    chown_tree(path)


def chown_tree(path):
    if ROOT:
        for dirpath, dirs, files in os.walk(path):
            for n in [dirpath] + [os.path.join(dirpath, x) for x in dirs + files]:
                os.lchown(n, PGUSER.pw_uid, PGUSER.pw_gid)


class Cluster:
    def __init__(self, work, name, port=None):
        self.dir = os.path.join(work, name)
        self.port = port or free_port()
        self.sock = work

    def psql(self, sql):
        return run([f"{BIN}/psql", "-X", "-h", self.sock, "-p", str(self.port), "-d", "postgres", "-Atc", sql])[1].strip()

    def start(self):
        # pg_ctl -w fails when recovery stops with an error; the caller reports that, the run goes on.
        secs, _ = run([f"{BIN}/pg_ctl", "-D", self.dir, "-l", self.dir + ".log", "-o", f"-p {self.port} -k {self.sock} -c listen_addresses=''",
                       "-w", "-t", "600", "start"], check=False)
        if not os.path.exists(os.path.join(self.dir, "postmaster.pid")):
            raise RuntimeError(f"the server on {self.dir} did not start; see {self.dir}.log")

    def stop(self):
        run([f"{BIN}/pg_ctl", "-D", self.dir, "-m", "fast", "-w", "stop"], check=False)

    def wait_promoted(self, timeout=600):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not os.path.exists(os.path.join(self.dir, "postmaster.pid")):
                raise RuntimeError(f"the restored server stopped during recovery; see {self.dir}.log")
            r = subprocess.run(as_pg([f"{BIN}/psql", "-X", "-h", self.sock, "-p", str(self.port), "-d", "postgres", "-Atc",
                                      "select pg_is_in_recovery()"]), capture_output=True, cwd="/", env=env_pg())
            if r.returncode == 0 and r.stdout.strip() == b"f":
                return
            time.sleep(0.05)
        raise RuntimeError("the restored server did not promote in time")

    def archive_wait(self):
        seg = self.psql("select pg_walfile_name(pg_current_wal_lsn())")
        self.psql("select pg_switch_wal()")
        t0 = time.monotonic()
        # pg_stat_archiver.last_archived_wal is not monotonic (a .backup history file can be archived
        # after a later segment); the segment's own .done status is the truth.
        while self.psql("select " + ARCHIVED.format(seg=seg)) != "t":
            time.sleep(0.02)
        return time.monotonic() - t0


def pitr_interleaved(a, work, src, tools, states, results):
    """PITR to a started server, interleaved like the restores. Every tool able to do it archives the
    same WAL from here on (their archive commands joined with &&). Each run is one tool's, and the
    same for every tool: it takes one more backup, then 500 pgbench transactions, the target, 100
    more, and recovers to that target from its own repository. So each replays only the WAL written
    after its own backup (a tool whose backup came first would otherwise also replay the other
    tool's backup checkpoint and the full-page images after it). The order alternates by round."""
    pitr_tools = {n: t for n, t in tools.items() if t.has_pitr}
    if not pitr_tools:
        return
    commands = []
    for name, tool in pitr_tools.items():
        tool.__dict__.update(states[""][name])
        commands.append(tool.archive_command())
    src.psql("alter system set archive_command = '" + " && ".join(commands).replace("'", "''") + "'")
    src.psql("select pg_reload_conf()")
    src.archive_wait()
    for name, tool in pitr_tools.items():
        tool.__dict__.update(states[""][name])
        if hasattr(tool, "archiver_ready"):
            tool.archiver_ready()
    seconds = {n: [] for n in pitr_tools}
    for i in range(a.repeat):
        order = list(pitr_tools.items()) if i % 2 == 0 else list(reversed(list(pitr_tools.items())))
        for name, tool in order:
            tool.__dict__.update(states[""][name])
            tool.incremental_backup()
            time.sleep(2)  # pgBackRest compares the target with backup stop times to the second
            run([f"{BIN}/pgbench", "-n", "-t", "500", "-h", src.sock, "-p", str(src.port), "postgres"])
            target = src.psql("select now()")
            time.sleep(0.2)
            run([f"{BIN}/pgbench", "-n", "-t", "100", "-h", src.sock, "-p", str(src.port), "postgres"])
            src.archive_wait()
            dest = os.path.join(work, f"{name}-pitr-{i}")
            prewrite(work, 2 * results["pgdata_bytes"])
            os.sync()  # the previous run's writeback is not charged to this one
            try:
                seconds[name].append(tool.pitr(dest, target))
                print(f"  {name} recovery: {recovery_summary(dest + '.log')}", flush=True)
            except RuntimeError as e:
                results["tools"][name]["pitr_error"] = str(e)
                print(f"== {name} PITR failed: {e}", flush=True)
            shutil.rmtree(dest, ignore_errors=True)
            if os.path.exists(dest + ".log"):
                os.unlink(dest + ".log")
    for name, runs in seconds.items():
        if runs:
            results["tools"][name]["pitr_seconds"] = statistics.median(runs)
            print(f"== {name} PITR to a started server: {statistics.median(runs):.2f}s, runs {' '.join(f'{x:.2f}' for x in runs)}", flush=True)


def recovery_summary(log):
    """Where a recovery's time went, from the restored server's log: WAL files restored, redo's own
    elapsed and CPU time, and the seconds from server start to accepting connections."""
    try:
        lines = open(log, errors="replace").read().splitlines()
    except OSError:
        return "no server log"
    stamp = lambda l: datetime.datetime.strptime(l[:23], "%Y-%m-%d %H:%M:%S.%f")
    restored = sum(1 for l in lines if "restored log file" in l)
    redo = next((l.split("system usage: ")[1] for l in lines if "redo done" in l and "system usage: " in l), "?")
    try:
        first = stamp(lines[0])
        ready = next(stamp(l) for l in lines if "ready to accept connections" in l)
        span = f"{(ready - first).total_seconds():.2f}s from start to ready"
    except (StopIteration, ValueError, IndexError):
        span = "?"
    return f"{restored} WAL files restored; redo {redo}; {span}"


def settle_after_delete(a):
    """After deleting a restore of many files, waits until ext4 no longer counts their inodes as
    recently deleted: ext4_create skips such inodes one by one (`recently_deleted`), so the next
    restore of 100,000 files would pay for this one's deletion, whichever tool runs it."""
    if a.tables:
        os.sync()
        time.sleep(35)


def churn_tables(src, tables):
    """Changes 1% of the tables (every hundredth): a row updated, rows added."""
    for first in range(7, tables + 1, 1000):
        last = min(first + 999, tables)
        src.psql(f"DO $$ BEGIN FOR i IN {first}..{last} BY 100 LOOP "
                 "EXECUTE format('UPDATE t%s SET body = ''changed'' WHERE id = 1', i); "
                 "EXECUTE format('INSERT INTO t%s SELECT (SELECT max(id) FROM t%s) + g, ''more'' FROM generate_series(1, 20) g', i, i); "
                 "END LOOP; END $$")
    src.psql("checkpoint")


def repo_objects(path):
    """Files in a repository directory: the objects (and requests) a backup costs on an object store."""
    return sum(len(files) for _, _, files in os.walk(path))


def use_archiver(src, tool):
    src.psql(f"alter system set archive_command = '{tool.archive_command()}'")
    src.psql("select pg_reload_conf()")
    src.archive_wait()
    if hasattr(tool, "archiver_ready"):
        tool.archiver_ready()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lifeboat", required=True)
    ap.add_argument("--scale", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--archive-seconds", type=int, default=20)
    ap.add_argument("--tools", default="lifeboat,pgbackrest,pg_basebackup,barman", help="comma-separated; lifeboat first")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    ap.add_argument("--random-mib", type=int, default=0,
                    help="add a table of N MiB of random base64 text (compresses about 1.3x) beside pgbench's data")
    ap.add_argument("--burst-mib", type=int, default=256,
                    help="WAL burst for archiving: 8 pgbench clients plus a bulk COPY writing about N MiB of WAL (0: none)")
    ap.add_argument("--tables", type=int, default=0,
                    help="load N small tables (each with a primary key and a TOAST table, built with DO loops) instead of pgbench")
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="lifeboat-bench-")
    os.chmod(work, 0o755)
    chown_tree(work)
    lb = os.path.join(work, "lifeboat")
    shutil.copy(a.lifeboat, lb)
    os.chmod(lb, 0o755)
    results = {"scale": a.scale, "repeat": a.repeat, "date": datetime.datetime.utcnow().isoformat() + "Z",
               "machine": machine(), "tools": {}, "floor": floor(work)}
    src = Cluster(work, "src")
    run([f"{BIN}/initdb", "-D", src.dir, "-k", "-A", "trust", "-U", PGUSER.pw_name])
    with open(src.dir + "/postgresql.auto.conf", "a") as f:
        f.write("archive_mode = on\narchive_command = '/bin/true'\nmax_wal_size = '2GB'\nshared_buffers = '128MB'\n"
                "checkpoint_timeout = '30min'\nlog_min_messages = warning\n")
    src.start()
    if a.tables:
        print(f"creating {a.tables} tables ...", flush=True)
        for first in range(1, a.tables + 1, 1000):
            last = min(first + 999, a.tables)
            src.psql(f"DO $$ BEGIN FOR i IN {first}..{last} LOOP "
                     "EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, body text)', i); "
                     "EXECUTE format('INSERT INTO t%s SELECT g, md5((g * %s)::text) FROM generate_series(1, 20) g', i, i); "
                     "END LOOP; END $$")
        # Settled as a cluster in service is: without this, autovacuum visits every new table
        # between the backups (visibility maps, hint bits), and "nothing changed" would not hold.
        src.psql("vacuum (analyze)")
    else:
        print(f"loading pgbench scale {a.scale} ...", flush=True)
        run([f"{BIN}/pgbench", "-i", "-q", "-s", str(a.scale), "-h", src.sock, "-p", str(src.port), "postgres"])
    if a.random_mib:
        # 128 random bytes per row as base64: about 6 bits of entropy per character.
        print(f"adding {a.random_mib} MiB of random text ...", flush=True)
        src.psql("create table bench_random (id int primary key, body text)")
        src.psql(f"insert into bench_random select g, encode(decode(md5(random()::text) || md5(random()::text) || md5(random()::text) || "
                 f"md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text), 'hex'), "
                 f"'base64') from generate_series(1, {a.random_mib * 4800}) g")
        src.psql("vacuum (analyze) bench_random")
    src.psql("checkpoint")
    # The load's dirty pages written back now, not during the first tool's full backup (with one
    # repetition that is always the same tool).
    os.sync()
    results["tables"] = a.tables
    results["random_mib"] = a.random_mib
    pgdata_bytes = du(src.dir) - du(src.dir + "/pg_wal")
    results["pgdata_bytes"] = pgdata_bytes
    print(f"PGDATA without WAL: {pgdata_bytes / 2**20:.0f} MiB", flush=True)

    tools = {"lifeboat": Lifeboat(work, lb, src), "pgbackrest": PgBackRest(work, src), "pg_basebackup": PgBaseBackup(work, src),
             "barman": Barman(work, src)}
    tools = {n: tools[n] for n in a.tools.split(",")}
    states = {"": {}, "lz4_": {}}  # each tool's repository for the restores, by compression
    # Full backups, interleaved like the restores: round i backs up with every tool in turn (the
    # order reversed every other round), so the data load's writeback and a disk that changes speed
    # weigh on every tool alike. Each tool then goes on from its last full backup's repository.
    fulls = {n: [] for n in tools}
    last_full = {}
    for i in range(a.repeat):
        order = list(tools.items()) if i % 2 == 0 else list(reversed(list(tools.items())))
        for name, tool in order:
            tool.fresh_repo(f"zstd-{i}", "zstd")
            use_archiver(src, tool)
            secs, rss = tool.full_backup()
            fulls[name].append((secs, rss, tool.repo_bytes(), repo_objects(tool.repo)))
            last_full[name] = dict(tool.__dict__)
            print(f"  {name} full backup {i + 1}: {secs:.2f}s, {pgdata_bytes / 2**20 / secs:.1f} MB/s, RSS {rss:.0f} MiB, "
                  f"repo {fulls[name][-1][2] / 2**20:.1f} MiB in {fulls[name][-1][3]} objects", flush=True)
    for name, tool in tools.items():
        print(f"== {name}", flush=True)
        r = results["tools"][name] = {}
        tool.__dict__.update(last_full[name])
        use_archiver(src, tool)
        r["full_backup_seconds"] = statistics.median(x[0] for x in fulls[name])
        r["full_backup_mb_s"] = pgdata_bytes / 2**20 / r["full_backup_seconds"]
        r["full_backup_peak_rss_mib"] = max(x[1] for x in fulls[name])
        r["repo_bytes_full"] = fulls[name][-1][2]
        r["repo_objects_full"] = fulls[name][-1][3]
        if tool.has_pitr:
            # A second backup with nothing changed (pgBackRest: incremental).
            time.sleep(1.5)
            secs, rss = tool.incremental_backup()
            r["unchanged_backup_seconds"] = secs
            r["unchanged_backup_peak_rss_mib"] = rss
            print(f"  second backup, nothing changed: {secs:.2f}s, RSS {rss:.0f} MiB", flush=True)
        for pct, modulo, remainder in [(1, 100, 7), (10, 10, 3)]:
            if a.tables:
                continue
            data_before, wal_before = tool.repo_split()
            src.psql(f"update pgbench_accounts set abalance = abalance + 1 where aid % {modulo} = {remainder}")
            src.psql("checkpoint")
            secs, rss = tool.incremental_backup()
            data_after, wal_after = tool.repo_split()
            r[f"churn{pct}_backup_seconds"] = secs
            r[f"churn{pct}_backup_growth_bytes"] = data_after - data_before
            r[f"churn{pct}_wal_growth_bytes"] = wal_after - wal_before
            r[f"churn{pct}_repo_growth_bytes"] = (data_after + wal_after) - (data_before + wal_before)
            print(f"  after {pct}% churn: {secs:.2f}s, backup data +{(data_after - data_before) / 2**20:.1f} MiB, "
                  f"archived WAL +{(wal_after - wal_before) / 2**20:.1f} MiB", flush=True)
        # Restores are measured later, interleaved across tools: keep what this repository needs.
        states[""][name] = dict(tool.__dict__)
        if a.tables:
            churn_tables(src, a.tables)
            data_before, wal_before = tool.repo_split()
            secs, rss = tool.incremental_backup()
            r["churn1_backup_seconds"] = secs
            r["churn1_backup_growth_bytes"] = tool.repo_split()[0] - data_before
            print(f"  after changing 1% of the tables: {secs:.2f}s, RSS {rss:.0f} MiB", flush=True)
        if tool.has_pitr and not a.tables:
            # WAL archiving under pgbench at full speed.
            first = src.psql("select archived_count from pg_stat_archiver")
            t0 = time.monotonic()
            run([f"{BIN}/pgbench", "-n", "-c", "2", "-T", str(a.archive_seconds), "-h", src.sock, "-p", str(src.port), "postgres"])
            r["archive_lag_seconds"] = src.archive_wait()
            elapsed = time.monotonic() - t0
            r["archive_segments_per_s"] = (int(src.psql("select archived_count from pg_stat_archiver")) - int(first)) / elapsed
            print(f"  archiving under pgbench: lag {r['archive_lag_seconds']:.2f}s, {r['archive_segments_per_s']:.2f} segments/s", flush=True)
        if tool.has_pitr and not a.tables and a.burst_mib:
            # A WAL burst: 8 pgbench clients and a bulk COPY at once; then how long the archive takes
            # to catch up, and the segments it archived per second from the burst's start.
            src.psql("drop table if exists bench_burst")
            src.psql("create table bench_burst (id bigint)")
            first = int(src.psql("select archived_count from pg_stat_archiver"))
            lsn0 = src.psql("select pg_current_wal_lsn()")
            t0 = time.monotonic()
            clients = subprocess.Popen(as_pg([f"{BIN}/pgbench", "-n", "-c", "8", "-T", "10", "-h", src.sock, "-p", str(src.port), "postgres"]),
                                       env=env_pg(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
            src.psql(f"copy bench_burst from program 'seq 1 {a.burst_mib * 15000}'")
            clients.wait()
            ended = time.monotonic()
            wal = int(src.psql(f"select pg_current_wal_lsn() - '{lsn0}'::pg_lsn"))
            r["burst_catch_up_seconds"] = src.archive_wait()
            elapsed = time.monotonic() - t0
            segments = int(src.psql("select archived_count from pg_stat_archiver")) - first
            r["burst_segments_per_s"] = segments / elapsed
            r["burst_wal_mib"] = wal / 2**20
            src.psql("drop table bench_burst")
            src.psql("checkpoint")
            print(f"  WAL burst: {wal / 2**20:.0f} MiB of WAL in {ended - t0:.1f}s, archive caught up {r['burst_catch_up_seconds']:.2f}s "
                  f"after it ended; {r['burst_segments_per_s']:.2f} segments/s", flush=True)
        # The same full backup and restore with lz4.
        # Each repetition into a fresh repository: a second backup into the same one would take the
        # unchanged files over unread, which is not what a full backup measures.
        lz4 = []
        for i in range(a.repeat):
            tool.fresh_repo(f"lz4-{i}", "lz4")
            use_archiver(src, tool)
            lz4.append(tool.full_backup()[0])
            if i == 0:
                r["lz4_repo_bytes_full"] = tool.repo_split()[0]
        r["lz4_full_backup_seconds"] = statistics.median(lz4)
        r["lz4_full_backup_mb_s"] = pgdata_bytes / 2**20 / r["lz4_full_backup_seconds"]
        states["lz4_"][name] = dict(tool.__dict__)
        print(f"  lz4: backup {r['lz4_full_backup_mb_s']:.1f} MB/s", flush=True)
        for d in os.listdir(work):
            if d.startswith(f"{name}-restore") or d.startswith(f"{name}-pitr"):
                shutil.rmtree(os.path.join(work, d), ignore_errors=True)
    # Restores, interleaved: round i restores with every tool in turn (the order reversed every other
    # round), so a disk that speeds up or slows down over minutes (this VM's does, 2-3x) weighs on
    # every tool alike instead of on whichever ran then. The disk speed is measured before each.
    for comp, label in (("", "zstd"), ("lz4_", "lz4")):
        seconds = {n: [] for n in tools}
        disks = {n: [] for n in tools}
        for i in range(a.repeat):
            order = list(tools.items()) if i % 2 == 0 else list(reversed(list(tools.items())))
            for name, tool in order:
                tool.__dict__.update(states[comp][name])
                prewrite(work, 2 * results["pgdata_bytes"])
                os.sync()  # the backups' (or the last restore's) writeback is not charged to this restore
                disks[name].append(disk_write_mb_s(work))
                dest = os.path.join(work, f"{name}-restore-{label}-{i}")
                seconds[name].append(tool.restore(dest))
                shutil.rmtree(dest, ignore_errors=True)
                settle_after_delete(a)
        for name in tools:
            r = results["tools"][name]
            r[f"{comp}disk_write_mb_s_before_restore"] = statistics.median(disks[name])
            r[f"{comp}restore_seconds"] = statistics.median(seconds[name])
            r[f"{comp}restore_mb_s"] = pgdata_bytes / 2**20 / r[f"{comp}restore_seconds"]
            print(f"== {name} {label} restore: {r[f'{comp}restore_seconds']:.2f}s ({r[f'{comp}restore_mb_s']:.1f} MB/s), "
                  f"runs {' '.join(f'{x:.2f}' for x in seconds[name])}", flush=True)
    if not a.tables:
        pitr_interleaved(a, work, src, tools, states, results)
    src.stop()
    write(results, a.out)
    shutil.rmtree(work, ignore_errors=True)


class Lifeboat:
    has_pitr = True

    def __init__(self, work, exe, src):
        self.work, self.exe, self.src = work, exe, src

    def fresh_repo(self, tag, compression):
        self.repo = os.path.join(self.work, f"lb-repo-{tag}")
        self.cfg = os.path.join(self.work, f"lb-{tag}.yaml")
        key = os.path.join(self.work, "lb.key")
        with open(key, "w") as f:
            f.write("bench passphrase\n")
        os.chmod(key, 0o600)
        level = "compression_level: 3\n" if compression == "zstd" else ""
        with open(self.cfg, "w") as f:
            f.write(f"repo: {self.repo}\nkey_file: {key}\nparallelism: 4\ncompression: {compression}\n{level}")
        os.makedirs(self.repo)
        chown_tree(self.work)
        run([self.exe, "repo", "init", "--config", self.cfg])

    def archive_command(self):
        return f"{self.exe} wal push --config {self.cfg} %p"

    def env(self):
        return env_pg({"PGHOST": self.src.sock, "PGPORT": str(self.src.port), "PGUSER": PGUSER.pw_name})

    def full_backup(self):
        return run_rss([self.exe, "backup", "--config", self.cfg, "--pgdata", self.src.dir], env=self.env())

    incremental_backup = full_backup

    def repo_bytes(self):
        return du(self.repo)

    def repo_split(self):
        wal = du(os.path.join(self.repo, "wal"))
        return du(self.repo) - wal, wal

    def restore(self, dest):
        return run([self.exe, "restore", "--config", self.cfg, "--to", dest])[0]

    def pitr(self, dest, target):
        port = free_port()
        secs, out = run([self.exe, "restore", "--config", self.cfg, "--to", dest, "--target-time", target, "--start", "--port", str(port),
                         "--socket-dir", self.work])
        # Where the time went, as the restore reports it (restored backup, files, recovery).
        phases = [l.strip() for l in out.splitlines() if l.strip().startswith(("restored backup", "restore files", "recover and", "target:"))]
        print(f"  lifeboat PITR {secs:.2f}s: " + "; ".join(phases), flush=True)
        run([f"{BIN}/pg_ctl", "-D", dest, "-m", "immediate", "-w", "stop"], check=False)
        return secs


class PgBackRest:
    has_pitr = True

    def __init__(self, work, src):
        self.work, self.src = work, src

    def fresh_repo(self, tag, compression):
        self.repo = os.path.join(self.work, f"pgbr-repo-{tag}")
        self.conf = os.path.join(self.work, f"pgbackrest-{tag}.conf")
        os.makedirs(self.repo)
        for d in ["pgbr-log", "pgbr-lock", "pgbr-spool"]:
            os.makedirs(os.path.join(self.work, d), exist_ok=True)
        compress = "compress-type=zst\ncompress-level=3" if compression == "zstd" else "compress-type=lz4"
        with open(self.conf, "w") as f:
            f.write(f"""[global]
repo1-path={self.repo}
{compress}
process-max=4
start-fast=y
log-level-console=warn
log-level-file=off
lock-path={self.work}/pgbr-lock
spool-path={self.work}/pgbr-spool
repo1-retention-full=10
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=bench passphrase

[bench]
pg1-path={self.src.dir}
pg1-port={self.src.port}
pg1-socket-path={self.src.sock}
""")
        chown_tree(self.work)
        run(["pgbackrest", f"--config={self.conf}", "--stanza=bench", "stanza-create"])

    def archive_command(self):
        return f"pgbackrest --config={self.conf} --stanza=bench archive-push %p"

    def full_backup(self):
        return run_rss(["pgbackrest", f"--config={self.conf}", "--stanza=bench", "--type=full", "backup"])

    def incremental_backup(self):
        return run_rss(["pgbackrest", f"--config={self.conf}", "--stanza=bench", "--type=incr", "backup"])

    def repo_bytes(self):
        return du(self.repo)

    def repo_split(self):
        wal = du(os.path.join(self.repo, "archive"))
        return du(self.repo) - wal, wal

    def restore(self, dest):
        empty_dir(dest)
        return run(["pgbackrest", f"--config={self.conf}", "--stanza=bench", f"--pg1-path={dest}", "--type=immediate",
                    "--target-action=promote", "restore"])[0]

    def pitr(self, dest, target):
        empty_dir(dest)
        t0 = time.monotonic()
        # archive-mode=off as Lifeboat's restores default to: the promoted copy must not push its new
        # timeline into the repositories the next tool recovers from.
        run(["pgbackrest", f"--config={self.conf}", "--stanza=bench", f"--pg1-path={dest}", "--type=time", f"--target={target}",
             "--target-action=promote", "--archive-mode=off", "restore"])
        return start_and_promote(self.work, dest, t0)


def start_and_promote(work, dest, t0):
    """Starts a restored cluster, waits until it is promoted; returns seconds since t0, then stops it."""
    c = Cluster(work, os.path.basename(dest), free_port())
    try:
        c.start()
        c.wait_promoted()
        return time.monotonic() - t0
    finally:
        c.stop()


class PgBaseBackup:
    has_pitr = False

    def __init__(self, work, src):
        self.work, self.src = work, src

    def fresh_repo(self, tag, compression):
        self.repo = os.path.join(self.work, f"pgbb-{tag}")
        self.compression = compression
        self.n = 0
        chown_tree(self.work)

    def archive_command(self):
        return "/bin/true"

    def full_backup(self):
        self.n += 1
        method = "client-zstd:3" if self.compression == "zstd" else "client-lz4"
        return run_rss([f"{BIN}/pg_basebackup", "-D", f"{self.repo}/{self.n}", "-Ft", f"--compress={method}", "-X", "fetch",
                        "-c", "fast", "-h", self.src.sock, "-p", str(self.src.port)])

    incremental_backup = full_backup  # pg_basebackup 15 has no incremental backups: each is full

    def repo_bytes(self):
        return du(self.repo)

    def repo_split(self):
        return du(self.repo), 0  # the WAL a backup needs is inside its tarball (-X fetch); nothing is archived

    def restore(self, dest):
        empty_dir(dest)
        t0 = time.monotonic()
        decompress = "zstd -dc" if self.compression == "zstd" else "lz4 -dc"
        ext = "zst" if self.compression == "zstd" else "lz4"
        run(["sh", "-c", f"{decompress} {self.repo}/{self.n}/base.tar.{ext} | tar -x -C {dest} && sync -f {dest}"])
        return time.monotonic() - t0


class Barman:
    """Barman 3 with backup_method = postgres (pg_basebackup underneath, compressed on the client), WAL
    by archive_command into its incoming directory, processed by `barman archive-wal` (what cron does)."""
    has_pitr = True

    def __init__(self, work, src):
        self.work, self.src = work, src

    def fresh_repo(self, tag, compression):
        self.home = os.path.join(self.work, f"barman-{tag}")
        self.conf = os.path.join(self.work, f"barman-{tag}.conf")
        os.makedirs(os.path.join(self.home, "staging"))
        level = "backup_compression_level = 3\n" if compression == "zstd" else ""
        with open(self.conf, "w") as f:
            f.write(f"""[barman]
barman_user = {PGUSER.pw_name}
barman_home = {self.home}
log_file = {self.home}/barman.log
log_level = WARNING
recovery_staging_path = {self.home}/staging
compression = gzip

[bench]
description = bench
conninfo = host={self.src.sock} port={self.src.port} user={PGUSER.pw_name} dbname=postgres
streaming_conninfo = host={self.src.sock} port={self.src.port} user={PGUSER.pw_name}
backup_method = postgres
archiver = on
backup_compression = {compression}
{level}backup_compression_format = tar
""")
        chown_tree(self.work)
        run(["barman", "-c", self.conf, "check", "bench"], check=False)  # creates the server's directories

    def archiver_ready(self):
        # Barman refuses a first backup until it has processed at least one archived segment.
        self.barman("switch-wal", "--force", "--archive", "--archive-timeout", "60", "bench")

    def barman(self, *args):
        return run(["barman", "-c", self.conf] + list(args))

    def archive_command(self):
        return f"cp %p {self.home}/bench/incoming/%f"

    def full_backup(self):
        return run_rss(["barman", "-c", self.conf, "backup", "--wait", "bench"])

    incremental_backup = full_backup  # backup_method = postgres has no incremental backups

    def repo_bytes(self):
        return sum(self.repo_split())

    def repo_split(self):
        self.barman("archive-wal", "bench")
        wal = du(os.path.join(self.home, "bench", "wals")) + du(os.path.join(self.home, "bench", "incoming"))
        return du(os.path.join(self.home, "bench", "base")), wal

    def restore(self, dest):
        empty_dir(dest)
        return self.barman("recover", "bench", "latest", dest)[0]

    def pitr(self, dest, target):
        self.barman("archive-wal", "bench")  # what `barman cron` does every minute
        empty_dir(dest)
        t0 = time.monotonic()
        # --get-wal: PostgreSQL asks barman for each segment. Without it, barman copies the WAL it
        # judges needed by archive time, which can stop before the segment holding the first commit
        # after the target, and recovery then fails. barman writes `sudo -u USER barman get-wal`;
        # here the server runs as that user already and barman needs this configuration file.
        self.barman("recover", "--get-wal", "--target-time", target, "--target-action", "promote", "bench", "latest", dest)
        auto = os.path.join(dest, "postgresql.auto.conf")
        with open(auto) as f:
            text = f.read()
        text = re.sub(r"sudo -u \S+ barman get-wal", f"barman -c {self.conf} get-wal", text)
        with open(auto, "w") as f:
            f.write(text)
        return start_and_promote(self.work, dest, t0)


def prewrite(work, nbytes):
    """Writes and deletes a file of `nbytes` right before a restore, so the restore lands on disk
    blocks written before. This VM's disk writes blocks never written before ~3.5x slower than ones
    written once (a scale-100 restore: 4.2-4.6 s onto fresh blocks, 1.1-1.7 s onto written ones), and
    which tool's restore got fresh blocks was luck, not the tool."""
    path = os.path.join(work, "prewrite.bin")
    mib = max(64, nbytes // 2**20)
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "conv=fdatasync"], capture_output=True, check=True)
    os.remove(path)
    os.sync()


def disk_write_mb_s(work, mib=512):
    """Sequential write with fdatasync, as dd does it."""
    path = os.path.join(work, "dd-now.bin")
    t0 = time.monotonic()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "conv=fdatasync"], capture_output=True, check=True)
    secs = time.monotonic() - t0
    os.remove(path)
    return mib * 1.048576 / secs


def floor(work):
    f = {}
    path = os.path.join(work, "dd.bin")
    out = subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", "count=1024", "conv=fdatasync"], capture_output=True, text=True).stderr
    f["dd_write"] = out.strip().splitlines()[-1]
    out = subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=1M", "iflag=direct"], capture_output=True, text=True).stderr
    f["dd_read_direct"] = out.strip().splitlines()[-1]
    os.remove(path)
    out = subprocess.run(["zstd", "-b3", "-i3"], capture_output=True, text=True)
    # zstd redraws its progress line with carriage returns; the last redraw is the result.
    f["zstd_b3"] = [l.strip() for l in (out.stdout + out.stderr).replace("\r", "\n").splitlines() if "MB/s" in l][-1]
    return f


def machine():
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except StopIteration:
        pass
    mem = next(l.split(":", 1)[1].strip() for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory": mem, "kernel": platform.release(),
            "postgresql": subprocess.run([f"{BIN}/postgres", "--version"], capture_output=True, text=True).stdout.strip(),
            "pgbackrest": subprocess.run(["pgbackrest", "version"], capture_output=True, text=True).stdout.strip(),
            "barman": "Barman " + subprocess.run(["barman", "--version"], capture_output=True, text=True).stdout.split()[0]}


TOOLS = [("lifeboat", "Lifeboat"), ("pgbackrest", "pgBackRest"), ("pg_basebackup", "pg_basebackup"), ("barman", "Barman")]
ROWS = [("full backup time (s)", "full_backup_seconds"), ("full backup throughput (MB/s)", "full_backup_mb_s"),
        ("full backup peak RSS (MiB)", "full_backup_peak_rss_mib"), ("repository after full, WAL included (MiB)", "repo_bytes_full"),
        ("objects in the repository after the full backup", "repo_objects_full"),
        ("second backup, nothing changed (s)", "unchanged_backup_seconds"),
        ("peak RSS of that backup (MiB)", "unchanged_backup_peak_rss_mib"),
        ("backup data added after 1% churn (MiB)", "churn1_backup_growth_bytes"),
        ("WAL archived during 1% churn (MiB)", "churn1_wal_growth_bytes"),
        ("backup data added after 10% churn (MiB)", "churn10_backup_growth_bytes"),
        ("WAL archived during 10% churn (MiB)", "churn10_wal_growth_bytes"),
        ("second backup after 1% churn (s)", "churn1_backup_seconds"), ("restore time (s)", "restore_seconds"),
        ("restore throughput (MB/s)", "restore_mb_s"), ("disk write (dd, fdatasync) before each restore, median (MB/s)", "disk_write_mb_s_before_restore"), ("PITR to a started server (s)", "pitr_seconds"),
        ("archive lag after pgbench (s)", "archive_lag_seconds"), ("archived segments/s under pgbench", "archive_segments_per_s"),
        ("WAL burst (8 clients + bulk COPY): WAL written (MiB)", "burst_wal_mib"),
        ("WAL burst: archive caught up after it ended (s)", "burst_catch_up_seconds"),
        ("WAL burst: segments archived per second from its start", "burst_segments_per_s"),
        ("lz4: full backup throughput (MB/s)", "lz4_full_backup_mb_s"), ("lz4: backup data after full (MiB)", "lz4_repo_bytes_full"),
        ("lz4: restore throughput (MB/s)", "lz4_restore_mb_s"),
        ("lz4: disk write before each restore, median (MB/s)", "lz4_disk_write_mb_s_before_restore")]


def write(results, out):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "latest.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    t = results["tools"]
    names = [n for n, _ in TOOLS if n in t]
    peers = names[1:]
    label = dict(TOOLS)

    def fmt(v, key):
        if v is None:
            return "n/a"
        return f"{v / 2**20:.1f}" if key.endswith("bytes") or key.endswith("bytes_full") else f"{v:.2f}"

    m = results["machine"]
    dataset = f"{results['tables']} small tables" if results.get("tables") else f"pgbench scale {results['scale']}"
    if results.get("random_mib"):
        dataset += f" plus {results['random_mib']} MiB of random base64 text"
    lines = [f"# Benchmark: {dataset} ({results['pgdata_bytes'] / 2**20:.0f} MiB PGDATA), median of {results['repeat']}",
             "", f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory']}; {m['postgresql']}; {m.get('pgbackrest', '')}; "
             f"{m.get('barman', '')}. Run {results['date']}.", "",
             "| figure | " + " | ".join(label[n] for n in names) + " | " + " | ".join(f"Lifeboat / {label[p]}" for p in peers) + " |",
             "|---" * (1 + len(names) + len(peers)) + "|"]
    svg_bars = []
    for row_label, key in ROWS:
        vals = [t[n].get(key) for n in names]
        ratios = [f"{vals[0] / v:.2f}×" if vals[0] is not None and v else "n/a" for v in vals[1:]]
        lines.append(f"| {row_label} | " + " | ".join(fmt(v, key) for v in vals) + " | " + " | ".join(ratios) + " |")
        if len(vals) > 1 and vals[0] is not None and vals[1]:
            svg_bars.append((row_label, vals[0] / vals[1]))
    lines += ["", "Floor: " + "; ".join(f"{k}: {v}" for k, v in results["floor"].items()), ""]
    with open(os.path.join(out, "latest.md"), "w") as f:
        f.write("\n".join(lines))
    width, bar_h = 820, 22
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{40 + bar_h * len(svg_bars)}" font-family="sans-serif" font-size="11">',
           '<text x="10" y="16">Lifeboat / pgBackRest (1.0 = equal; the line marks 1.0)</text>']
    top = max([r for _, r in svg_bars] + [1.0])
    for i, (row_label, ratio) in enumerate(svg_bars):
        y = 28 + i * bar_h
        w = 400 * ratio / top
        svg.append(f'<text x="10" y="{y + 14}">{row_label}</text><rect x="330" y="{y + 3}" width="{w:.1f}" height="{bar_h - 8}" fill="#1565c0"/>'
                   f'<text x="{335 + w:.1f}" y="{y + 14}">{ratio:.2f}×</text>')
    x1 = 330 + 400 / top
    svg.append(f'<line x1="{x1:.1f}" y1="24" x2="{x1:.1f}" y2="{28 + bar_h * len(svg_bars)}" stroke="#c62828"/></svg>')
    with open(os.path.join(out, "latest.svg"), "w") as f:
        f.write("\n".join(svg))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
