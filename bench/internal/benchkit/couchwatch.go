package benchkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/medic/couchwatch/internal/testenv"
)

// ModuleRoot returns the directory holding the couchwatch go.mod.
func ModuleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside the couchwatch module")
	}
	return filepath.Dir(mod), nil
}

// BinEnv names an environment variable holding a prebuilt couchwatch binary to use
// instead of building ./cmd/couchwatch (e.g. one built with other flags).
const BinEnv = "COUCHWATCH_BENCH_BIN"

// BuildCouchwatch builds ./cmd/couchwatch into dir the way the Dockerfile builds the
// shipped image (static, stripped: CGO_ENABLED=0, -trimpath, -ldflags "-s -w"), so that
// CPU and memory are measured on what ships, and returns the binary's path; or returns
// $COUCHWATCH_BENCH_BIN when that is set.
func BuildCouchwatch(ctx context.Context, dir string) (string, error) {
	if bin := os.Getenv(BinEnv); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("%s: %w", BinEnv, err)
		}
		return bin, nil
	}
	root, err := ModuleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "couchwatch")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w", "-o", bin, "./cmd/couchwatch")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/couchwatch: %w\n%s", err, out)
	}
	return bin, nil
}

// FreeAddr returns a 127.0.0.1:port that was free a moment ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

const maxOutput = 4 << 20

// Couchwatch is a running couchwatch subprocess.
type Couchwatch struct {
	Addr string // its COUCHWATCH_LISTEN, 127.0.0.1:port

	cmd    *exec.Cmd
	out    *testenv.LogBuffer
	done   chan struct{}
	err    error
	client *http.Client
}

// CouchwatchEnv is the environment of one couchwatch run. Tuning holds extra
// COUCHWATCH_* variables (name -> value); unset ones keep couchwatch's defaults.
type CouchwatchEnv struct {
	Servers        string // COUCHDB_SERVERS
	User, Password string
	Socket         string // COUCHWATCH_HAPROXY_SOCKET ("" = agent mode)
	AgentListen    string // "" = off
	Tuning         map[string]string
}

func (e CouchwatchEnv) list(listen string) []string {
	agent := e.AgentListen
	if agent == "" {
		agent = "off"
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"COUCHDB_SERVERS=" + e.Servers,
		"COUCHDB_USER=" + e.User,
		"COUCHDB_PASSWORD=" + e.Password,
		"COUCHWATCH_LISTEN=" + listen,
		"COUCHWATCH_AGENT_LISTEN=" + agent,
		"COUCHWATCH_KUBE=off",
		"COUCHWATCH_LOG_FORMAT=text",
	}
	if e.Socket != "" {
		env = append(env, "COUCHWATCH_HAPROXY_SOCKET="+e.Socket)
	}
	for k, v := range e.Tuning {
		env = append(env, k+"="+v)
	}
	return env
}

// StartCouchwatch runs bin with env and waits (at most timeout) until /readyz answers 200.
func StartCouchwatch(ctx context.Context, bin string, env CouchwatchEnv, timeout time.Duration) (*Couchwatch, error) {
	listen, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	c := &Couchwatch{
		Addr:   listen,
		out:    &testenv.LogBuffer{Max: maxOutput},
		done:   make(chan struct{}),
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}},
	}
	c.cmd = exec.Command(bin)
	c.cmd.Env = env.list(listen)
	c.cmd.Stdout = c.out
	c.cmd.Stderr = c.out
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start couchwatch: %w", err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	err = WaitFor(ctx, timeout, 20*time.Millisecond, func() (bool, error) {
		select {
		case <-c.done:
			return false, fmt.Errorf("couchwatch exited: %v", c.err)
		default:
		}
		code, _, err := c.get(ctx, "/readyz")
		return err == nil && code == http.StatusOK, nil
	})
	if err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("couchwatch not ready: %w\n%s", err, tail(c.Output(), 3000))
	}
	return c, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

func (c *Couchwatch) get(ctx context.Context, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Addr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	return resp.StatusCode, b, err
}

// Pid is the couchwatch process id.
func (c *Couchwatch) Pid() int { return c.cmd.Process.Pid }

// Output is what couchwatch logged so far.
func (c *Couchwatch) Output() string { return c.out.String() }

// Metrics scrapes /metrics.
func (c *Couchwatch) Metrics(ctx context.Context) (Metrics, error) {
	code, b, err := c.get(ctx, "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape couchwatch metrics: %w", err)
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("scrape couchwatch metrics: status %d", code)
	}
	return ParseMetrics(string(b)), nil
}

// WaitVerdicts waits until n nodes have the verdict (e.g. "up").
func (c *Couchwatch) WaitVerdicts(ctx context.Context, verdict string, n int, timeout time.Duration) error {
	var last int
	err := WaitFor(ctx, timeout, 50*time.Millisecond, func() (bool, error) {
		m, err := c.Metrics(ctx)
		if err != nil {
			return false, nil
		}
		last = m.Count("couchwatch_node_verdict", map[string]string{"verdict": verdict}, 1)
		return last == n, nil
	})
	if err != nil {
		return fmt.Errorf("%d of %d nodes %s: %w", last, n, verdict, err)
	}
	return nil
}

// Stop sends SIGTERM and waits up to 5 s, then kills the process group.
func (c *Couchwatch) Stop() error {
	select {
	case <-c.done:
		return nil
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return nil
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
		return errors.New("couchwatch did not stop on SIGTERM, killed")
	}
}

// WaitFor polls cond every interval until it returns true, an error, ctx ends or
// timeout passes.
func WaitFor(ctx context.Context, timeout, interval time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("condition not met within %s", timeout)
		case <-t.C:
		}
	}
}

// Itoa is strconv.Itoa, for building env maps tersely.
func Itoa(i int) string { return strconv.Itoa(i) }
