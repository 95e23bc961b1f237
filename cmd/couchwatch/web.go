package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/net/netutil"
)

// WebConfig sets how the HTTP side (/metrics, health, status page) is served.
type WebConfig struct {
	ConfigFile string `env:"COUCHWATCH_WEB_CONFIG_FILE" desc:"Prometheus exporter-toolkit web config (YAML: tls_server_config, basic_auth_users with bcrypt hashes) for TLS and basic auth on every HTTP path, /healthz included; unset = plain HTTP"`
	MaxConns   int    `env:"COUCHWATCH_HTTP_MAX_CONNS, default=64" desc:"most HTTP connections served at once; more wait in the kernel's backlog (lowered to fit RLIMIT_NOFILE, so steering keeps its descriptors)"`
}

// Validate reports every problem at once.
func (c WebConfig) Validate() error {
	var errs []error
	if c.ConfigFile != "" {
		if err := web.Validate(c.ConfigFile); err != nil {
			errs = append(errs, fmt.Errorf("COUCHWATCH_WEB_CONFIG_FILE %s: %w", c.ConfigFile, err))
		}
	}
	if c.MaxConns < 1 || c.MaxConns > 4096 {
		errs = append(errs, fmt.Errorf("COUCHWATCH_HTTP_MAX_CONNS must be within [1, 4096], got %d", c.MaxConns))
	}
	return errors.Join(errs...)
}

// HTTP server bounds: an idle keep-alive connection, a slow header, a slow
// reader of /metrics each hold one descriptor for a bounded time only.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpReadTimeout       = 10 * time.Second
	httpWriteTimeout      = 30 * time.Second
	httpIdleTimeout       = 30 * time.Second
	httpMaxHeaderBytes    = 16 << 10
)

// Descriptors kept out of the HTTP and agent caps: the HAProxy runtime API
// (a unix connection per exchange), probes (a few per node), Kubernetes
// watches, logs and the runtime's own.
const (
	fdReserveBase    = 64
	fdReservePerNode = 4
)

// connCaps are the HTTP and agent connection caps for a process allowed
// nofile descriptors: the configured caps, lowered so that both together
// leave the reserve free. Steering then never meets EMFILE whatever the
// ports see.
func connCaps(nofile uint64, nodes, httpMax, agentMax int) (httpCap, agentCap int) {
	reserve := uint64(fdReserveBase + fdReservePerNode*nodes)
	if nofile <= reserve+4 {
		return 2, 2
	}
	half := int(min((nofile-reserve)/2, 1<<20))
	return max(2, min(httpMax, half)), max(2, min(agentMax, half))
}

// nofile is this process's soft RLIMIT_NOFILE (Go raises it to the hard
// limit at start); 0 when unknown.
func nofile() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return r.Cur
}

// httpServer is the HTTP server with every timeout set.
func (a *app) httpServer() *http.Server {
	return &http.Server{
		Handler:           a.handler(),
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		// TLS handshake and accept errors: debug, never a log line per bad client.
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
}

// serveHTTP serves srv on ln, at most max connections at once, through the
// exporter-toolkit web config (TLS, basic auth) when one is set. It returns
// http.ErrServerClosed after Shutdown.
func (a *app) serveHTTP(ln net.Listener, srv *http.Server, max int) error {
	ln = netutil.LimitListener(ln, max)
	path, systemd := a.cfg.Web.ConfigFile, false
	addrs := []string{ln.Addr().String()}
	flags := &web.FlagConfig{WebListenAddresses: &addrs, WebSystemdSocket: &systemd, WebConfigFile: &path}
	return web.Serve(ln, srv, flags, a.log.With("component", "http"))
}
