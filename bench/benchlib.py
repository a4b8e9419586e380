"""What the benchmark scripts share: ports, starting and stopping servers by pid, and what
/proc says of a process (CPU seconds, resident memory). Imported by compare.py, cluster.py
and turn_vs_coturn.py, which run from any directory (Python puts the script's own folder
first on the import path)."""
import random, resource, signal, socket, subprocess, time


def free_port():
    """A port below the ephemeral range (the load tool's client sockets live there, on
    several 127.0.0.x addresses), free on every address."""
    while True:
        port = random.randint(20000, 32000)
        with socket.socket(socket.AF_INET6) as s:
            try:
                s.bind(("::", port))
                return port
            except OSError:
                continue


def wait_port(port, proc, timeout=30):
    """Waits until something listens on `port`; fails if `proc` exits first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port}")


def raise_nofile():
    """Raises the open-file limit to the hard limit (as `preexec_fn` of a server)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def stop(proc):
    """SIGTERM, then SIGKILL after 10 s: by the process's own pid, never by name."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid):
    """CPU seconds (user + system) a process used so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / 100.0


def rss_kib(pid):
    """A process's resident memory in KiB, from /proc/<pid>/status (0 if not found)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
