// Package haproxytest runs a real HAProxy process in a temporary directory for tests,
// benchmarks and demos, the way net/http/httptest runs a real HTTP server.
//
// The process runs in master-worker mode with a master socket (used only to learn
// that the master is alive) and an admin-level stats socket, a frontend on a free
// 127.0.0.1 port, and one backend shaped like CHT's couchdb-servers. Everything it
// reads back (Cmd, Servers, WaitServer) goes through its own small socket client, so
// assertions never depend on the code under test.
package haproxytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/medic/couchwatch/internal/testenv"
)

// Binary is where the HAProxy executable is expected.
const Binary = "/usr/sbin/haproxy"

// DefaultBackend is the backend name CHT uses.
const DefaultBackend = "couchdb-servers"

// ServerSpec is one "server" line of the backend.
type ServerSpec struct {
	Name  string
	Addr  string // host:port
	Extra string // appended to this server's line, e.g. "check inter 2s fall 3 rise 2"
}

// Options shape the generated configuration. The zero value is usable: a backend
// with no servers.
type Options struct {
	Backend      string // default DefaultBackend
	Servers      []ServerSpec
	ServerExtra  string   // appended to every server line (before ServerSpec.Extra)
	BackendExtra []string // extra lines in the backend, e.g. "option httpchk GET /_up"
	Balance      string   // default "leastconn"
	// Timeouts are "timeout ..." lines for the defaults section; default connect 1s,
	// client 30s, server 30s, check 1s.
	Timeouts    []string
	GlobalExtra []string // extra lines in the global section
	// StartTimeout bounds Start and Reload; default 10s.
	StartTimeout time.Duration
}

// Proc is a running HAProxy.
type Proc struct {
	dir      string
	cfgPath  string
	sock     string
	master   string
	frontend string
	backend  string
	timeout  time.Duration

	cmd  *exec.Cmd
	out  *testenv.LogBuffer
	done chan struct{}
	err  error // set before done is closed

	closeOnce sync.Once
	removeDir func()
}

// StartT starts HAProxy for a test or benchmark, stops it in t.Cleanup and dumps its
// output with t.Log if the test failed. It fails the test when HAProxy does not come up;
// when the binary is missing it fails in CI and skips elsewhere (testenv.Missing).
func StartT(t testing.TB, opt Options) *Proc {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		testenv.Missing(t, "haproxytest: %s is required (apt-get install haproxy): %v", Binary, err)
	}
	dir := t.TempDir()
	p, err := start(dir, opt)
	if err != nil {
		t.Fatalf("haproxytest: %v", err)
	}
	t.Cleanup(func() {
		_ = p.Close()
		if t.Failed() {
			t.Logf("haproxytest: config:\n%s", p.Config())
			t.Logf("haproxytest: haproxy output:\n%s", p.Output())
		}
	})
	return p
}

// Start starts HAProxy in a new temporary directory that Close removes.
func Start(opt Options) (*Proc, error) {
	dir, err := os.MkdirTemp("", "haproxytest-")
	if err != nil {
		return nil, fmt.Errorf("haproxytest: temp dir: %w", err)
	}
	p, err := start(dir, opt)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("haproxytest: %w", err)
	}
	owned := dir
	p.removeDir = func() { _ = os.RemoveAll(owned) }
	return p, nil
}

func start(dir string, opt Options) (*Proc, error) {
	if opt.Backend == "" {
		opt.Backend = DefaultBackend
	}
	if opt.Balance == "" {
		opt.Balance = "leastconn"
	}
	if opt.StartTimeout <= 0 {
		opt.StartTimeout = 10 * time.Second
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p := &Proc{
		dir:      dir,
		cfgPath:  filepath.Join(dir, "haproxy.cfg"),
		sock:     filepath.Join(dir, "admin.sock"),
		master:   filepath.Join(dir, "master.sock"),
		frontend: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		backend:  opt.Backend,
		timeout:  opt.StartTimeout,
		out:      &testenv.LogBuffer{},
		done:     make(chan struct{}),
	}
	if err := os.WriteFile(p.cfgPath, []byte(p.render(opt)), 0o600); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	// -W master-worker, -db foreground, -S master CLI socket.
	p.cmd = exec.Command(Binary, "-W", "-db", "-f", p.cfgPath, "-S", p.master)
	p.cmd.Dir = dir
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", Binary, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	if _, err := p.waitWorker(0, nil); err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("haproxy did not start: %w\n%s", err, p.out.String())
	}
	// The master handles signals in the same loop that serves its CLI: once the CLI
	// answers, a SIGUSR2 is no longer lost.
	if err := p.waitMaster(); err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("haproxy master not ready: %w\n%s", err, p.out.String())
	}
	return p, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (p *Proc) render(opt Options) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("global")
	w("  master-worker")
	w("  log stderr format short local0 info")
	w("  stats socket %s mode 660 level admin", p.sock)
	w("  stats timeout 30s")
	for _, l := range opt.GlobalExtra {
		w("  %s", l)
	}
	w("")
	w("defaults")
	w("  mode http")
	w("  log global")
	timeouts := opt.Timeouts
	if len(timeouts) == 0 {
		timeouts = []string{"connect 1s", "client 30s", "server 30s", "check 1s"}
	}
	for _, l := range timeouts {
		w("  timeout %s", strings.TrimPrefix(l, "timeout "))
	}
	w("")
	w("frontend couchdb")
	w("  bind %s", p.frontend)
	w("  default_backend %s", opt.Backend)
	w("")
	w("backend %s", opt.Backend)
	w("  balance %s", opt.Balance)
	w("  retries 5")
	w("  retry-on all-retryable-errors")
	w("  option redispatch")
	for _, l := range opt.BackendExtra {
		w("  %s", l)
	}
	for _, s := range opt.Servers {
		line := fmt.Sprintf("  server %s %s", s.Name, s.Addr)
		if opt.ServerExtra != "" {
			line += " " + opt.ServerExtra
		}
		if s.Extra != "" {
			line += " " + s.Extra
		}
		w("%s", line)
	}
	return b.String()
}

// Socket is the admin stats socket path.
func (p *Proc) Socket() string { return p.sock }

// MasterSocket is the master CLI socket path.
func (p *Proc) MasterSocket() string { return p.master }

// FrontendAddr is the 127.0.0.1:port the frontend listens on.
func (p *Proc) FrontendAddr() string { return p.frontend }

// Backend is the backend's name.
func (p *Proc) Backend() string { return p.backend }

// Dir is the temporary directory holding the config and sockets.
func (p *Proc) Dir() string { return p.dir }

// Config returns the generated configuration.
func (p *Proc) Config() string {
	b, err := os.ReadFile(p.cfgPath)
	if err != nil {
		return fmt.Sprintf("(cannot read config: %v)", err)
	}
	return string(b)
}

// Output is what HAProxy wrote to stdout and stderr so far (its log included).
func (p *Proc) Output() string { return p.out.String() }

// Cmd sends one command line (commands may be ';'-separated) on a new admin socket
// connection and returns the whole raw reply.
func (p *Proc) Cmd(line string) (string, error) {
	return Exchange(p.sock, line, 5*time.Second)
}

// Exchange sends one command line on a new connection to the admin (or master) socket at
// path and returns the whole raw reply; for assertions and benchmarks that must not go
// through the code under test.
func Exchange(path, line string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return "", fmt.Errorf("dial %s: %w", path, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", fmt.Errorf("write %q: %w", line, err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return string(b), fmt.Errorf("read reply to %q: %w", line, err)
	}
	return string(b), nil
}

// workerPid asks the worker behind the admin socket for its pid.
func (p *Proc) workerPid() (int, error) {
	out, err := Exchange(p.sock, "show info", time.Second)
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "Pid: "); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("no Pid in show info: %q", out)
}

func (p *Proc) waitMaster() error {
	deadline := time.Now().Add(p.timeout)
	var last error
	for time.Now().Before(deadline) {
		out, err := Exchange(p.master, "show proc;quit", time.Second)
		if err == nil && strings.Contains(out, "worker") {
			return nil
		}
		last = fmt.Errorf("show proc: %q, %v", out, err)
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	return fmt.Errorf("timeout after %s: %v", p.timeout, last)
}

// waitWorker waits until a worker other than old answers on the admin socket,
// calling nudge (if any) every second while it waits.
func (p *Proc) waitWorker(old int, nudge func()) (int, error) {
	deadline := time.Now().Add(p.timeout)
	nextNudge := time.Now().Add(time.Second)
	var last error
	for time.Now().Before(deadline) {
		if nudge != nil && time.Now().After(nextNudge) {
			nudge()
			nextNudge = time.Now().Add(time.Second)
		}
		select {
		case <-p.done:
			return 0, fmt.Errorf("haproxy exited: %v", p.err)
		default:
		}
		pid, err := p.workerPid()
		if err == nil && pid != old {
			return pid, nil
		}
		if err == nil {
			err = fmt.Errorf("still the old worker %d", pid)
		}
		last = err
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	return 0, fmt.Errorf("timeout after %s: %v", p.timeout, last)
}

// Reload reloads HAProxy for real (SIGUSR2 to the master, as systemd does) and waits
// until a new worker answers on the admin socket. Runtime changes are lost, exactly
// as in production.
func (p *Proc) Reload() error {
	old, err := p.workerPid()
	if err != nil {
		return fmt.Errorf("haproxytest: reload: current worker: %w", err)
	}
	reloads := strings.Count(p.Output(), "Reloading HAProxy")
	if err := p.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		return fmt.Errorf("haproxytest: reload: %w", err)
	}
	resend := func() {
		// A signal that arrived while the master was busy may be lost: send it
		// again while no reload has started.
		if strings.Count(p.Output(), "Reloading HAProxy") == reloads {
			_ = p.cmd.Process.Signal(syscall.SIGUSR2)
		}
	}
	if _, err := p.waitWorker(old, resend); err != nil {
		return fmt.Errorf("haproxytest: reload: %w", err)
	}
	return nil
}

// Close stops HAProxy (SIGTERM, then SIGKILL to its process group after 5 s) and, for
// a Proc made by Start, removes its directory.
func (p *Proc) Close() error {
	var err error
	p.closeOnce.Do(func() {
		if p.cmd == nil || p.cmd.Process == nil {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
			err = errors.New("haproxytest: haproxy did not stop on SIGTERM, killed")
		}
		if p.removeDir != nil {
			p.removeDir()
		}
	})
	return err
}

// Server is one server as HAProxy reports it, read by this package's own parser.
type Server struct {
	Name        string
	Addr        string
	Port        int
	OpState     int    // srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping
	AdminBits   int    // srv_admin_state (decimal)
	UWeight     int    // srv_uweight
	IWeight     int    // srv_iweight
	Status      string // show stat "status": UP, DOWN, MAINT, DRAIN, NOLB, "UP 1/2", ...
	Weight      int    // show stat "weight"
	CheckStatus string
	AgentStatus string
}

// Servers reads backend's servers from "show servers state" and "show stat".
func (p *Proc) Servers(backend string) (map[string]Server, error) {
	st, err := p.Cmd("show servers state " + backend)
	if err != nil {
		return nil, err
	}
	out := map[string]Server{}
	for _, l := range strings.Split(st, "\n") {
		f := strings.Fields(l)
		if len(f) < 19 || strings.HasPrefix(l, "#") || f[1] != backend {
			continue
		}
		s := Server{Name: f[3], Addr: f[4]}
		s.OpState, _ = strconv.Atoi(f[5])
		s.AdminBits, _ = strconv.Atoi(f[6])
		s.UWeight, _ = strconv.Atoi(f[7])
		s.IWeight, _ = strconv.Atoi(f[8])
		s.Port, _ = strconv.Atoi(f[18])
		out[s.Name] = s
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no servers for backend %q in %q", backend, st)
	}
	stat, err := p.Cmd("show stat " + backend + " 4 -1")
	if err != nil {
		return nil, err
	}
	var cols map[string]int
	for _, l := range strings.Split(stat, "\n") {
		if h, ok := strings.CutPrefix(l, "# "); ok {
			cols = map[string]int{}
			for i, c := range strings.Split(h, ",") {
				cols[c] = i
			}
			continue
		}
		f := strings.Split(l, ",")
		if cols == nil || len(f) < len(cols)-1 {
			continue
		}
		s, ok := out[f[cols["svname"]]]
		if !ok {
			continue
		}
		s.Status = f[cols["status"]]
		s.Weight, _ = strconv.Atoi(f[cols["weight"]])
		s.CheckStatus = f[cols["check_status"]]
		s.AgentStatus = f[cols["agent_status"]]
		out[s.Name] = s
	}
	return out, nil
}

// MinWait is the least WaitServer waits for a condition, whatever timeout it is given:
// the wait returns as soon as the condition holds, so a long bound costs nothing, while
// a short one fails on a busy 2-core CI machine. A test that needs "fast" measures it
// (bench/), it does not time a wait.
const MinWait = 30 * time.Second

// WaitServer polls what HAProxy reports for backend/server until cond holds, and
// fails the test when max(timeout, MinWait) passes first. It returns the last state read.
func (p *Proc) WaitServer(t testing.TB, backend, server string, cond func(Server) bool, timeout time.Duration) Server {
	t.Helper()
	s, err := p.PollServer(context.Background(), backend, server, cond, max(timeout, MinWait))
	if err != nil {
		t.Fatalf("haproxytest: %s/%s: %v", backend, server, err)
	}
	return s
}

// PollServer is WaitServer for code without a testing.TB.
func (p *Proc) PollServer(ctx context.Context, backend, server string, cond func(Server) bool, timeout time.Duration) (Server, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last Server
	var lastErr error
	for {
		all, err := p.Servers(backend)
		if err == nil {
			s, ok := all[server]
			if ok && cond(s) {
				return s, nil
			}
			last, lastErr = s, nil
			if !ok {
				lastErr = fmt.Errorf("no such server")
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("condition not met within %s (last %+v, err %v)", timeout, last, lastErr)
		case <-time.After(25 * time.Millisecond):
		}
	}
}
