"""Lifeboat vs pgBackRest vs pg_basebackup on the same pgbench data, in one run.

Every tool gets the same cluster, zstd level 3 and 4 parallel processes where it has them.
Figures: wall time, throughput of PGDATA, peak RSS (wait4 of the tool's process tree), repository
bytes; growth after 1% and 10% row churn; restore time; point-in-time restore to a started,
promoted server; WAL archiving lag under pgbench; the machine's floor (dd, zstd -b).
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
        run([f"{BIN}/pg_ctl", "-D", self.dir, "-l", self.dir + ".log", "-o", f"-p {self.port} -k {self.sock} -c listen_addresses=''",
             "-w", "-t", "600", "start"])

    def stop(self):
        run([f"{BIN}/pg_ctl", "-D", self.dir, "-m", "fast", "-w", "stop"], check=False)

    def wait_promoted(self, timeout=600):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = subprocess.run(as_pg([f"{BIN}/psql", "-X", "-h", self.sock, "-p", str(self.port), "-d", "postgres", "-Atc",
                                      "select pg_is_in_recovery()"]), capture_output=True, cwd="/", env=env_pg())
            if r.returncode == 0 and r.stdout.strip() == b"f":
                return
            time.sleep(0.05)
        sys.exit("restored server did not promote")

    def archive_wait(self):
        seg = self.psql("select pg_walfile_name(pg_current_wal_lsn())")
        self.psql("select pg_switch_wal()")
        t0 = time.monotonic()
        # pg_stat_archiver.last_archived_wal is not monotonic (a .backup history file can be archived
        # after a later segment); the segment's own .done status is the truth.
        while self.psql("select " + ARCHIVED.format(seg=seg)) != "t":
            time.sleep(0.02)
        return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lifeboat", required=True)
    ap.add_argument("--scale", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--archive-seconds", type=int, default=20)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
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
    print(f"loading pgbench scale {a.scale} ...", flush=True)
    run([f"{BIN}/pgbench", "-i", "-q", "-s", str(a.scale), "-h", src.sock, "-p", str(src.port), "postgres"])
    src.psql("checkpoint")
    pgdata_bytes = du(src.dir) - du(src.dir + "/pg_wal")
    results["pgdata_bytes"] = pgdata_bytes
    print(f"PGDATA without WAL: {pgdata_bytes / 2**20:.0f} MiB", flush=True)

    tools = {"lifeboat": Lifeboat(work, lb, src), "pgbackrest": PgBackRest(work, src), "pg_basebackup": PgBaseBackup(work, src)}
    for name, tool in tools.items():
        print(f"== {name}", flush=True)
        r = results["tools"][name] = {}
        fulls = []
        for i in range(a.repeat):
            tool.fresh_repo(i)
            src.psql(f"alter system set archive_command = '{tool.archive_command()}'")
            src.psql("select pg_reload_conf()")
            src.archive_wait()
            secs, rss = tool.full_backup()
            fulls.append((secs, rss, tool.repo_bytes()))
            print(f"  full backup {i + 1}: {secs:.2f}s, {pgdata_bytes / 2**20 / secs:.1f} MB/s, RSS {rss:.0f} MiB, repo {fulls[-1][2] / 2**20:.1f} MiB", flush=True)
        r["full_backup_seconds"] = statistics.median(x[0] for x in fulls)
        r["full_backup_mb_s"] = pgdata_bytes / 2**20 / r["full_backup_seconds"]
        r["full_backup_peak_rss_mib"] = max(x[1] for x in fulls)
        r["repo_bytes_full"] = fulls[-1][2]
        for pct, modulo, remainder in [(1, 100, 7), (10, 10, 3)]:
            before = tool.repo_bytes()
            src.psql(f"update pgbench_accounts set abalance = abalance + 1 where aid % {modulo} = {remainder}")
            src.psql("checkpoint")
            secs, rss = tool.incremental_backup()
            r[f"churn{pct}_backup_seconds"] = secs
            r[f"churn{pct}_repo_growth_bytes"] = tool.repo_bytes() - before
            print(f"  after {pct}% churn: {secs:.2f}s, repo +{r[f'churn{pct}_repo_growth_bytes'] / 2**20:.1f} MiB", flush=True)
        restores = []
        for i in range(a.repeat):
            secs = tool.restore(os.path.join(work, f"{name}-restore-{i}"))
            restores.append(secs)
        r["restore_seconds"] = statistics.median(restores)
        r["restore_mb_s"] = pgdata_bytes / 2**20 / r["restore_seconds"]
        print(f"  restore: {r['restore_seconds']:.2f}s ({r['restore_mb_s']:.1f} MB/s)", flush=True)
        if tool.has_pitr:
            run([f"{BIN}/pgbench", "-n", "-t", "500", "-h", src.sock, "-p", str(src.port), "postgres"])
            target = src.psql("select now()")
            time.sleep(0.2)
            run([f"{BIN}/pgbench", "-n", "-t", "100", "-h", src.sock, "-p", str(src.port), "postgres"])
            src.archive_wait()
            r["pitr_seconds"] = tool.pitr(os.path.join(work, f"{name}-pitr"), target)
            print(f"  PITR to a started server: {r['pitr_seconds']:.2f}s", flush=True)
            # WAL archiving under pgbench at full speed.
            first = src.psql("select archived_count from pg_stat_archiver")
            t0 = time.monotonic()
            run([f"{BIN}/pgbench", "-n", "-c", "2", "-T", str(a.archive_seconds), "-h", src.sock, "-p", str(src.port), "postgres"])
            r["archive_lag_seconds"] = src.archive_wait()
            elapsed = time.monotonic() - t0
            r["archive_segments_per_s"] = (int(src.psql("select archived_count from pg_stat_archiver")) - int(first)) / elapsed
            print(f"  archiving under pgbench: lag {r['archive_lag_seconds']:.2f}s, {r['archive_segments_per_s']:.2f} segments/s", flush=True)
    src.stop()
    write(results, a.out)
    shutil.rmtree(work, ignore_errors=True)


class Lifeboat:
    has_pitr = True

    def __init__(self, work, exe, src):
        self.work, self.exe, self.src = work, exe, src

    def fresh_repo(self, i):
        self.repo = os.path.join(self.work, f"lb-repo-{i}")
        self.cfg = os.path.join(self.work, f"lb-{i}.yaml")
        key = os.path.join(self.work, "lb.key")
        with open(key, "w") as f:
            f.write("bench passphrase\n")
        os.chmod(key, 0o600)
        with open(self.cfg, "w") as f:
            f.write(f"repo: {self.repo}\nkey_file: {key}\nparallelism: 4\ncompression_level: 3\n")
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

    def restore(self, dest):
        return run([self.exe, "restore", "--config", self.cfg, "--to", dest])[0]

    def pitr(self, dest, target):
        port = free_port()
        return run([self.exe, "restore", "--config", self.cfg, "--to", dest, "--target-time", target, "--start", "--port", str(port),
                    "--socket-dir", self.work])[0] + stop_after(dest, port, self.work)


def stop_after(dest, port, sock):
    run([f"{BIN}/pg_ctl", "-D", dest, "-m", "immediate", "-w", "stop"], check=False)
    return 0.0


class PgBackRest:
    has_pitr = True

    def __init__(self, work, src):
        self.work, self.src = work, src

    def fresh_repo(self, i):
        self.repo = os.path.join(self.work, f"pgbr-repo-{i}")
        self.conf = os.path.join(self.work, f"pgbackrest-{i}.conf")
        os.makedirs(self.repo)
        for d in ["pgbr-log", "pgbr-lock", "pgbr-spool"]:
            os.makedirs(os.path.join(self.work, d), exist_ok=True)
        with open(self.conf, "w") as f:
            f.write(f"""[global]
repo1-path={self.repo}
compress-type=zst
compress-level=3
process-max=4
start-fast=y
log-level-console=warn
log-level-file=off
lock-path={self.work}/pgbr-lock
spool-path={self.work}/pgbr-spool
repo1-retention-full=10

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

    def restore(self, dest):
        os.makedirs(dest, mode=0o700)
        chown_tree(dest)
        return run(["pgbackrest", f"--config={self.conf}", "--stanza=bench", f"--pg1-path={dest}", "--type=immediate",
                    "--target-action=promote", "restore"])[0]

    def pitr(self, dest, target):
        os.makedirs(dest, mode=0o700)
        chown_tree(dest)
        port = free_port()
        t0 = time.monotonic()
        run(["pgbackrest", f"--config={self.conf}", "--stanza=bench", f"--pg1-path={dest}", "--type=time", f"--target={target}",
             "--target-action=promote", "restore"])
        c = Cluster(self.work, os.path.basename(dest), port)
        c.start()
        c.wait_promoted()
        secs = time.monotonic() - t0
        c.stop()
        return secs


class PgBaseBackup:
    has_pitr = False

    def __init__(self, work, src):
        self.work, self.src = work, src

    def fresh_repo(self, i):
        self.repo = os.path.join(self.work, f"pgbb-{i}")
        self.n = 0
        chown_tree(self.work)

    def archive_command(self):
        return "/bin/true"

    def full_backup(self):
        self.n += 1
        return run_rss([f"{BIN}/pg_basebackup", "-D", f"{self.repo}/{self.n}", "-Ft", "--compress=client-zstd:3", "-X", "fetch",
                        "-c", "fast", "-h", self.src.sock, "-p", str(self.src.port)])

    incremental_backup = full_backup  # pg_basebackup 15 has no incremental backups: each is full

    def repo_bytes(self):
        return du(self.repo)

    def restore(self, dest):
        os.makedirs(dest, mode=0o700)
        chown_tree(dest)
        t0 = time.monotonic()
        run(["sh", "-c", f"zstd -dc {self.repo}/{self.n}/base.tar.zst | tar -x -C {dest}"])
        return time.monotonic() - t0


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
            "pgbackrest": subprocess.run(["pgbackrest", "version"], capture_output=True, text=True).stdout.strip()}


def write(results, out):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "latest.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    t = results["tools"]
    lb = t["lifeboat"]
    rows = [("full backup time (s)", "full_backup_seconds", False), ("full backup throughput (MB/s)", "full_backup_mb_s", True),
            ("full backup peak RSS (MiB)", "full_backup_peak_rss_mib", False), ("repository after full (MiB)", "repo_bytes_full", False),
            ("growth after 1% churn (MiB)", "churn1_repo_growth_bytes", False), ("growth after 10% churn (MiB)", "churn10_repo_growth_bytes", False),
            ("second backup after 1% churn (s)", "churn1_backup_seconds", False), ("restore time (s)", "restore_seconds", False),
            ("restore throughput (MB/s)", "restore_mb_s", True), ("PITR to a started server (s)", "pitr_seconds", False),
            ("archive lag after pgbench (s)", "archive_lag_seconds", False), ("archived segments/s under pgbench", "archive_segments_per_s", True)]
    def fmt(v, key):
        if v is None:
            return "n/a"
        return f"{v / 2**20:.1f}" if key.endswith("bytes") or key == "repo_bytes_full" else f"{v:.2f}"
    lines = [f"# Benchmark: pgbench scale {results['scale']} ({results['pgdata_bytes'] / 2**20:.0f} MiB PGDATA), median of {results['repeat']}",
             "", f"Machine: {results['machine']['cpus']} CPUs ({results['machine']['cpu']}), {results['machine']['memory']}; "
             f"{results['machine']['postgresql']}; {results['machine']['pgbackrest']}. Run {results['date']}.", "",
             "| figure | Lifeboat | pgBackRest | pg_basebackup | Lifeboat / pgBackRest | Lifeboat / pg_basebackup |", "|---|---|---|---|---|---|"]
    svg_bars = []
    for label, key, _ in rows:
        vals = [t[n].get(key) for n in ["lifeboat", "pgbackrest", "pg_basebackup"]]
        ratios = [f"{vals[0] / v:.2f}×" if vals[0] is not None and v else "n/a" for v in vals[1:]]
        lines.append(f"| {label} | {fmt(vals[0], key)} | {fmt(vals[1], key)} | {fmt(vals[2], key)} | {ratios[0]} | {ratios[1]} |")
        if vals[0] is not None and vals[1]:
            svg_bars.append((label, vals[0] / vals[1]))
    lines += ["", "Floor: " + "; ".join(f"{k}: {v}" for k, v in results["floor"].items()), ""]
    with open(os.path.join(out, "latest.md"), "w") as f:
        f.write("\n".join(lines))
    width, bar_h = 760, 22
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{40 + bar_h * len(svg_bars)}" font-family="sans-serif" font-size="11">',
           '<text x="10" y="16">Lifeboat / pgBackRest (1.0 = equal; the line marks 1.0)</text>']
    top = max([r for _, r in svg_bars] + [1.0])
    for i, (label, ratio) in enumerate(svg_bars):
        y = 28 + i * bar_h
        w = 400 * ratio / top
        svg.append(f'<text x="10" y="{y + 14}">{label}</text><rect x="300" y="{y + 3}" width="{w:.1f}" height="{bar_h - 8}" fill="#1565c0"/>'
                   f'<text x="{305 + w:.1f}" y="{y + 14}">{ratio:.2f}×</text>')
    x1 = 300 + 400 / top
    svg.append(f'<line x1="{x1:.1f}" y1="24" x2="{x1:.1f}" y2="{28 + bar_h * len(svg_bars)}" stroke="#c62828"/></svg>')
    with open(os.path.join(out, "latest.svg"), "w") as f:
        f.write("\n".join(svg))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
