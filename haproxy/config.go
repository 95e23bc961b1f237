package haproxy

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/medic/couchwatch/internal/envconf"
)

// Config configures the runtime API client.
type Config struct {
	// Socket is the admin socket path (unix only). A "unix@" prefix is accepted;
	// TCP addresses ("ipv4@", "ipv6@", "tcp", host:port) are rejected.
	Socket string `env:"COUCHWATCH_HAPROXY_SOCKET" desc:"HAProxy admin socket (stats socket ... level admin); unset = no runtime steering (agent mode only)"`
	// Backend is the backend holding the CouchDB servers; zero means the tag's default.
	Backend string `env:"COUCHWATCH_HAPROXY_BACKEND, default=couchdb-servers" desc:"HAProxy backend holding the CouchDB servers"`
	// DryRun logs the plan and sends no command.
	DryRun bool
	// Timeout bounds one exchange with HAProxy (dial, write, read); zero means the tag's default.
	Timeout time.Duration `env:"COUCHWATCH_HAPROXY_TIMEOUT, default=2s" desc:"deadline of one exchange with HAProxy's runtime API"`
}

// Validate reports every problem at once, each naming its environment variable.
// Zero Backend and Timeout are valid: they mean the defaults.
func (c Config) Validate() error {
	var errs []error
	if c.Socket == "" {
		errs = append(errs, errors.New("COUCHWATCH_HAPROXY_SOCKET: required (path of HAProxy's admin stats socket)"))
	} else if _, err := socketPath(c.Socket); err != nil {
		errs = append(errs, fmt.Errorf("COUCHWATCH_HAPROXY_SOCKET: %w", err))
	}
	if c.Backend != "" && strings.ContainsAny(c.Backend, " \t\r\n;/") {
		errs = append(errs, fmt.Errorf("COUCHWATCH_HAPROXY_BACKEND: %q is not a backend name (no spaces, ';' or '/')", c.Backend))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("COUCHWATCH_HAPROXY_TIMEOUT: %s is negative", c.Timeout))
	} else if c.Timeout > time.Minute {
		errs = append(errs, fmt.Errorf("COUCHWATCH_HAPROXY_TIMEOUT: %s is longer than 1m", c.Timeout))
	}
	return errors.Join(errs...)
}

// DefaultConfig returns the defaults of the env tags (no socket).
func DefaultConfig() Config { return envconf.Defaults[Config]() }

// withDefaults fills zero fields from the tags, for callers that build a Config by hand.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Backend == "" {
		c.Backend = d.Backend
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	return c
}

// socketPath returns the filesystem path of a unix socket address, or an error for
// anything that is not one.
func socketPath(s string) (string, error) {
	if p, ok := strings.CutPrefix(s, "unix@"); ok {
		s = p
	}
	lower := strings.ToLower(s)
	for _, prefix := range []string{"ipv4@", "ipv6@", "tcp", "udp", "fd@", "sockpair@", "abns@"} {
		if strings.HasPrefix(lower, prefix) {
			return "", fmt.Errorf("%q: only a unix socket path is supported, not a network address", s)
		}
	}
	if !strings.Contains(s, "/") && strings.Contains(s, ":") {
		return "", fmt.Errorf("%q looks like host:port: only a unix socket path is supported", s)
	}
	if s == "" {
		return "", errors.New("empty unix socket path")
	}
	return s, nil
}
