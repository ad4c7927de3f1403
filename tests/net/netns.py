"""netns.py — separate "hosts" for network tests, made of network namespaces.

A Net is a context manager that creates namespaces named
`tlcm-TAG-PID-HOST`, joins them with veth pairs (Net.link) or through a
bridge in a namespace of its own (Net.lan), and gives each end an address
on a private subnet (10.77.K.0/24) that exists only inside those
namespaces. Nothing is created in the caller's namespace, so tests can run
side by side. Leaving the `with` block (also on an exception) kills every
process started in the namespaces (by PID) and deletes them; entering it
first deletes what a crashed earlier run with the same TAG left behind
(namespaces whose PID is no longer alive).

    from netns import Net, require_netns
    require_netns()                       # exit 77 (or 1 with CI=true)
    with Net("link") as net:
        a, b = net.host("a"), net.host("b")
        ab = net.link(a, b)               # a.addr("b") == "10.77.1.1"
        srv = b.popen(["tinylcm", "run", "core.yaml"])
        ab.down(); ab.up()                # cut and restore the cable
        ab.limit("1mbit")                 # tc tbf on both ends
        ab.unlimit()

Link faults inside TCP (stalls, resets, half-open peers) come from
faultproxy.py: this kernel has no netem. Host.start_mdns() starts a
private dbus-daemon and avahi-daemon for the host (tests/net/
discovery_test.py). Runs as root with iproute2; require_netns() says why
not otherwise.
"""
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

PREFIX = "tlcm-"
SUBNET = "10.77"


def _ip(*args, check=True, ns=None):
    cmd = ["ip"] + (["-n", ns] if ns else []) + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), p.stderr.strip()))
    return p


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _become_subreaper():
    """Daemons that fork (dbus-daemon --fork, avahi-daemon -D) are
    re-parented to us instead of init, so we can reap them by PID."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def kill_pid(pid, timeout=10):
    """SIGKILL pid and wait until it is gone (reaped when it is our child
    or re-parented to us; else until /proc shows it dead)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            try:
                with open("/proc/%d/stat" % pid) as f:
                    if f.read().rsplit(")", 1)[1].split()[0] in "ZX":
                        return
            except (FileNotFoundError, IndexError):
                return
        time.sleep(0.02)


def pid_gone(pid):
    """True when pid no longer runs (absent, or a zombie)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in "ZX"
    except (FileNotFoundError, IndexError):
        return True


def netns_unavailable():
    """None when namespaces can be made here, else the reason."""
    if os.geteuid() != 0:
        return "network namespaces need root (euid %d)" % os.geteuid()
    for tool in ("ip", "tc"):
        if not shutil.which(tool):
            return "%s (iproute2) is not installed" % tool
    name = "%sprobe-%d" % (PREFIX, os.getpid())
    p = _ip("netns", "add", name, check=False)
    if p.returncode != 0:
        return "ip netns add is not permitted: %s" % p.stderr.strip()
    _ip("netns", "del", name, check=False)
    return None


def skip(reason):
    """Exit 77 (skipped) with the reason; with CI=true a skip fails."""
    if os.environ.get("CI") == "true":
        print("FAIL %s (CI=true: a skip is a failure)" % reason)
        sys.exit(1)
    print("SKIP %s" % reason)
    sys.exit(77)


def require_netns():
    why = netns_unavailable()
    if why:
        skip(why)


def _pids_in(ns):
    p = _ip("netns", "pids", ns, check=False)
    return [int(x) for x in p.stdout.split() if x.isdigit()]


def _kill_ns(ns):
    """SIGKILL every process in namespace ns, then delete it."""
    for _ in range(50):
        pids = _pids_in(ns)
        if not pids:
            break
        for pid in pids:
            kill_pid(pid, timeout=1)
        time.sleep(0.05)
    _ip("netns", "del", ns, check=False)


class Link:
    """A cable between two hosts (veth pair) or a host's port on a lan."""

    def __init__(self, net, ends):
        self.net = net
        self.ends = ends  # [(Host or switch ns name, dev)]

    def _each(self, which):
        for ns, dev in self.ends:
            name = ns.ns if isinstance(ns, Host) else ns
            if which is None or which is ns or (
                    isinstance(ns, Host) and ns.name == which):
                yield name, dev

    def down(self, side=None):
        """Cut: `ip link set DEV down` on both ends (or the side given)."""
        for ns, dev in self._each(side):
            _ip("link", "set", dev, "down", ns=ns)

    def up(self, side=None):
        for ns, dev in self._each(side):
            _ip("link", "set", dev, "up", ns=ns)

    def limit(self, rate, burst="32kbit", latency="400ms", side=None):
        """A tbf bandwidth limit on the egress of each end (`rate` as tc
        writes it: "1mbit", "256kbit")."""
        for ns, dev in self._each(side):
            p = subprocess.run(["tc", "-n", ns, "qdisc", "replace", "dev",
                                dev, "root", "tbf", "rate", rate, "burst",
                                burst, "latency", latency],
                               capture_output=True, text=True, timeout=30)
            if p.returncode != 0:
                raise RuntimeError("tc tbf on %s/%s: %s"
                                   % (ns, dev, p.stderr.strip()))

    def unlimit(self, side=None):
        for ns, dev in self._each(side):
            subprocess.run(["tc", "-n", ns, "qdisc", "del", "dev", dev,
                            "root"], capture_output=True, timeout=30)


class Host:
    def __init__(self, net, name):
        self.net = net
        self.name = name
        self.ns = "%s%s-%d-%s" % (PREFIX, net.tag, os.getpid(), name)
        self.addrs = {}   # peer name (or "lan") -> address
        self.devs = {}    # peer name (or "lan") -> device
        self.procs = []
        self.mdns = None  # (holder Popen, dbus pid, avahi pid)

    def addr(self, peer=None):
        """This host's address towards peer (a Host or name), or its
        only/first address."""
        if peer is None:
            return next(iter(self.addrs.values()))
        return self.addrs[peer.name if isinstance(peer, Host) else peer]

    def wrap(self, argv):
        """argv run inside this host (in its mDNS mount namespace once
        start_mdns() ran, so the client library finds its daemon)."""
        if self.mdns:
            return ["nsenter", "-t", str(self.mdns[0].pid), "-m", "-n",
                    "-u"] + list(argv)
        return ["ip", "netns", "exec", self.ns] + list(argv)

    def popen(self, argv, **kw):
        """subprocess.Popen inside this host; killed at Net exit."""
        p = subprocess.Popen(self.wrap(argv), **kw)
        self.procs.append(p)
        return p

    def run(self, argv, timeout=60, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.wrap(argv), timeout=timeout, **kw)

    def start_mdns(self):
        """Start a private dbus-daemon and avahi-daemon for this host, in
        a mount namespace with its own /run (TESTING-ENV recipe) and its
        own host name (the namespace's name; NAME.local in mDNS). Later
        popen/run calls enter that namespace. Returns their PIDs."""
        for tool in ("dbus-daemon", "avahi-daemon", "unshare", "nsenter"):
            if not shutil.which(tool) and not os.path.exists(
                    "/usr/sbin/" + tool):
                raise FileNotFoundError(
                    "%s is not installed (tools/install-deps)" % tool)
        script = (
            "set -e; mount -t tmpfs tmpfs /run; "
            "mkdir -p /run/dbus /run/avahi-daemon; hostname %s; "
            "dbus-daemon --system --fork --print-pid; "
            "echo ready; exec sleep 100000") % self.ns[-60:]
        holder = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "unshare", "--mount",
             "--uts", "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(holder)
        dbus = holder.stdout.readline().strip()
        if not dbus.isdigit() or holder.stdout.readline().strip() != "ready":
            holder.kill()
            raise RuntimeError("dbus-daemon in %s did not start: %s"
                               % (self.name, holder.stderr.read()[-2000:]))
        self.mdns = [holder, int(dbus), None]
        return self.mdns[1], self.start_avahi()

    def start_avahi(self, timeout=15):
        """(Re)start this host's avahi-daemon (after start_mdns), on this
        host's devices only, IPv4; returns its PID."""
        conf = os.path.join(self.net.tmp, "avahi-%s.conf" % self.name)
        with open(conf, "w") as f:
            f.write("[server]\nuse-ipv4=yes\nuse-ipv6=no\n"
                    "allow-interfaces=%s\nratelimit-interval-usec=0\n"
                    "enable-dbus=yes\n[wide-area]\nenable-wide-area=no\n"
                    "[publish]\npublish-workstation=no\n"
                    "publish-hinfo=no\n"
                    % ",".join(sorted(set(self.devs.values()))))
        self.run(["rm", "-f", "/run/avahi-daemon/pid"])
        r = self.run(["avahi-daemon", "--no-drop-root", "--no-chroot",
                      "--no-rlimits", "-D", "-f", conf])
        if r.returncode != 0:
            raise RuntimeError("avahi-daemon in %s did not start: %s"
                               % (self.name, r.stderr[-2000:]))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.run(["cat", "/run/avahi-daemon/pid"])
            if r.returncode == 0 and r.stdout.strip().isdigit():
                self.mdns[2] = int(r.stdout.strip())
                return self.mdns[2]
            time.sleep(0.05)
        raise RuntimeError("avahi-daemon in %s wrote no pid" % self.name)

    def stop_mdns(self):
        """Kill this host's dbus-daemon and avahi-daemon by PID."""
        if not self.mdns:
            return
        holder, dbus, avahi = self.mdns
        self.mdns = None
        for pid in (avahi, dbus):
            if pid:
                kill_pid(pid)
        holder.kill()
        holder.wait()

    def kill_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.stop_mdns()


class Net:
    """Hosts and cables; see the module comment."""

    def __init__(self, tag):
        if not tag.replace("_", "").isalnum() or len(tag) > 16:
            raise ValueError("Net tag %r: up to 16 letters/digits" % tag)
        self.tag = tag
        self.hosts = {}
        self.switches = []
        self.links = []
        self.nsubnet = 0
        self.tmp = None

    # -- lifecycle -----------------------------------------------------
    def __enter__(self):
        _become_subreaper()
        self.cleanup_leftovers()
        self.tmp = tempfile.mkdtemp(prefix="tlcm-net-")
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        for h in self.hosts.values():
            h.kill_all()
        for ns in [h.ns for h in self.hosts.values()] + self.switches:
            _kill_ns(ns)
        self.hosts, self.switches = {}, []
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def cleanup_leftovers(self):
        """Delete namespaces of this tag left by runs that no longer
        exist (their PID is in the name). Returns their names."""
        gone = []
        mine = "%s%s-" % (PREFIX, self.tag)
        for line in _ip("netns", "list", check=False).stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            if not name.startswith(mine):
                continue
            pid = name[len(mine):].split("-", 1)[0]
            if pid.isdigit() and _pid_alive(int(pid)):
                continue
            _kill_ns(name)
            gone.append(name)
        return gone

    # -- topology ------------------------------------------------------
    def host(self, name):
        if name in self.hosts or not name.isalnum() or len(name) > 12:
            raise ValueError("host name %r: new, up to 12 letters/digits"
                             % name)
        h = Host(self, name)
        _ip("netns", "add", h.ns)
        self.hosts[name] = h
        _ip("link", "set", "lo", "up", ns=h.ns)
        return h

    def _subnet(self):
        self.nsubnet += 1
        if self.nsubnet > 250:
            raise ValueError("too many links")
        return "%s.%d" % (SUBNET, self.nsubnet)

    def link(self, a, b):
        """A veth pair between hosts a and b (multicast on), devices named
        after the peer (`to-B` in a), addresses SUBNET.K.1 and .2/24."""
        net = self._subnet()
        da, db = "to-%s" % b.name, "to-%s" % a.name
        _ip("link", "add", da, "netns", a.ns, "type", "veth", "peer",
            "name", db, "netns", b.ns)
        for h, dev, peer, n in ((a, da, b, 1), (b, db, a, 2)):
            addr = "%s.%d" % (net, n)
            _ip("addr", "add", addr + "/24", "dev", dev, ns=h.ns)
            _ip("link", "set", dev, "multicast", "on", "up", ns=h.ns)
            h.addrs[peer.name], h.devs[peer.name] = addr, dev
        link = Link(self, [(a, da), (b, db)])
        self.links.append(link)
        return link

    def lan(self, hosts):
        """Hosts on one bridge (in a switch namespace of its own), device
        `lan` in each, addresses SUBNET.K.1, .2, … in order. Returns one
        Link per host: its cable to the switch."""
        net = self._subnet()
        sw = "%s%s-%d-sw%d" % (PREFIX, self.tag, os.getpid(), self.nsubnet)
        _ip("netns", "add", sw)
        self.switches.append(sw)
        _ip("link", "add", "br0", "type", "bridge", ns=sw)
        _ip("link", "set", "br0", "multicast", "on", "up", ns=sw)
        out = []
        for i, h in enumerate(hosts):
            port = "p-%s" % h.name
            _ip("link", "add", "lan", "netns", h.ns, "type", "veth", "peer",
                "name", port, "netns", sw)
            _ip("link", "set", port, "master", "br0", ns=sw)
            _ip("link", "set", port, "multicast", "on", "up", ns=sw)
            addr = "%s.%d" % (net, i + 1)
            _ip("addr", "add", addr + "/24", "dev", "lan", ns=h.ns)
            _ip("link", "set", "lan", "multicast", "on", "up", ns=h.ns)
            h.addrs["lan"], h.devs["lan"] = addr, "lan"
            link = Link(self, [(h, "lan"), (sw, port)])
            self.links.append(link)
            out.append(link)
        return out
