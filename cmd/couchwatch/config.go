package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/couch"
	"github.com/medic/couchwatch/haproxy"
	"github.com/medic/couchwatch/internal/envconf"
	"github.com/medic/couchwatch/kube"
)

//go:generate sh -c "go run . -help-markdown > ../../docs/config.md"

// Config is everything couchwatch reads from its environment. CHT's own variable names
// are reused where they exist; ours start with COUCHWATCH_. Each variable is one field:
// its name and default in the env tag, its meaning in the desc tag (internal/envconf).
// Loading, -help and docs/config.md read those tags, nothing else; a package's own Config
// is embedded as a field and walked the same way.
type Config struct {
	Servers      string `env:"COUCHDB_SERVERS" desc:"CouchDB nodes: comma list of host, host:port or http(s)://host:port (CHT's variable; required)"`
	User         string `env:"COUCHDB_USER" desc:"CouchDB admin user (CHT's variable)"`
	UserFile     string `env:"COUCHDB_USER_FILE" desc:"file holding the CouchDB user (instead of COUCHDB_USER)"`
	Password     string `env:"COUCHDB_PASSWORD" desc:"CouchDB admin password (CHT's variable; never logged)"`
	PasswordFile string `env:"COUCHDB_PASSWORD_FILE" desc:"file holding the CouchDB password (instead of COUCHDB_PASSWORD)"`

	Listen      string `env:"COUCHWATCH_LISTEN, default=:9155" desc:"HTTP address for /metrics, /healthz, /readyz and the status page"`
	AgentListen string `env:"COUCHWATCH_AGENT_LISTEN, default=:5555" desc:"TCP address of the HAProxy agent-check server (drop-in for cht-haproxy-healthcheck); off disables it"`
	LogLevel    string `env:"COUCHWATCH_LOG_LEVEL, default=info" desc:"debug, info, warn or error"`
	LogFormat   string `env:"COUCHWATCH_LOG_FORMAT, default=json" desc:"json or text"`
	DryRun      bool   `env:"COUCHWATCH_DRY_RUN, default=false" desc:"log what would be done to HAProxy and Kubernetes, change nothing"`

	HAProxy    haproxy.Config // its DryRun is DryRun above
	Reconcile  time.Duration  `env:"COUCHWATCH_RECONCILE_INTERVAL, default=1s" desc:"how often HAProxy's state is re-read and repaired (also at once on every verdict change)"`
	ServerMap  string         `env:"COUCHWATCH_SERVER_MAP" desc:"explicit CouchDB host to HAProxy server names, host=server,...; default: same name, else same address:port"`
	OnNodeLoss string         `env:"COUCHWATCH_ON_NODE_LOSS, default=serve" desc:"serve: healthy coordinators keep serving when a node is lost; fail: the cluster-wide agent answer goes down (CHT's old all-or-nothing, with hysteresis)"`

	Policy PolicyConfig
	Checks checks.Config
	Kube   kube.Config // its DryRun is DryRun above

	CouchMetrics CouchMetricsConfig // couchmetrics.go
	Shards       ShardsConfig       // blast.go
	Web          WebConfig          // web.go
}

// loadConfig reads the environment through l and validates it. The error names every
// problem at once: a value of the wrong type keeps its default and is reported, and the
// checks of everything else still run.
func loadConfig(ctx context.Context, l envconfig.Lookuper) (Config, error) {
	var c Config
	errs := []error{envconf.Process(ctx, &c, l)}
	errs = append(errs, c.readSecrets()...)
	// One variable, read once, for both writers.
	c.HAProxy.DryRun = c.DryRun
	c.Kube.DryRun = c.DryRun
	errs = append(errs, c.Validate())
	return c, errors.Join(errs...)
}

// maxSecretFile caps what a *_FILE variable may hold: a user name or password, never a
// stream (/dev/zero) or a file a mistake pointed at.
const maxSecretFile = 4096

// readSecrets resolves COUCHDB_USER_FILE and COUCHDB_PASSWORD_FILE into User and Password.
func (c *Config) readSecrets() []error {
	var errs []error
	for _, s := range []struct {
		name  string
		value *string
		file  string
	}{
		{"COUCHDB_USER", &c.User, c.UserFile},
		{"COUCHDB_PASSWORD", &c.Password, c.PasswordFile},
	} {
		switch {
		case s.file == "":
		case *s.value != "":
			errs = append(errs, fmt.Errorf("%s and %s_FILE are both set: set one", s.name, s.name))
		default:
			v, err := readSecretFile(s.file)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s_FILE: %w", s.name, err))
			}
			*s.value = v
		}
	}
	return errs
}

// readSecretFile reads a regular file of at most maxSecretFile bytes, without its
// trailing newline. The path is not secret and is named; the content never is.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	switch {
	case err != nil:
		return "", fmt.Errorf("read %s: %w", path, err)
	case len(b) > maxSecretFile:
		return "", fmt.Errorf("%s is larger than %d bytes", path, maxSecretFile)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return v, nil
}

// Validate returns every problem at once, each naming its variable.
func (c Config) Validate() error {
	var errs []error
	targets, err := couch.ParseServers(c.Servers)
	switch {
	case strings.TrimSpace(c.Servers) == "":
		errs = append(errs, errors.New("COUCHDB_SERVERS is required (comma list of CouchDB hosts)"))
	case err != nil:
		errs = append(errs, fmt.Errorf("COUCHDB_SERVERS: %w", err))
	}
	hasUser, hasPassword := c.User != "" || c.UserFile != "", c.Password != "" || c.PasswordFile != ""
	if hasUser && !hasPassword {
		errs = append(errs, errors.New("COUCHDB_PASSWORD (or COUCHDB_PASSWORD_FILE) is required when COUCHDB_USER is set"))
	}
	if hasPassword && !hasUser {
		errs = append(errs, errors.New("COUCHDB_USER (or COUCHDB_USER_FILE) is required when COUCHDB_PASSWORD is set"))
	}
	if err := checkListen("COUCHWATCH_LISTEN", c.Listen, false); err != nil {
		errs = append(errs, err)
	}
	if err := checkListen("COUCHWATCH_AGENT_LISTEN", c.AgentListen, true); err != nil {
		errs = append(errs, err)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("COUCHWATCH_LOG_LEVEL must be debug, info, warn or error, got %q", c.LogLevel))
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		errs = append(errs, fmt.Errorf("COUCHWATCH_LOG_FORMAT must be json or text, got %q", c.LogFormat))
	}
	switch c.OnNodeLoss {
	case "serve", "fail":
	default:
		errs = append(errs, fmt.Errorf("COUCHWATCH_ON_NODE_LOSS must be serve or fail, got %q", c.OnNodeLoss))
	}
	if c.Reconcile <= 0 || c.Reconcile > time.Minute {
		errs = append(errs, fmt.Errorf("COUCHWATCH_RECONCILE_INTERVAL must be within (0, 1m], got %s", c.Reconcile))
	}
	if targets != nil {
		// Without a valid COUCHDB_SERVERS, which hosts the map may name is unknown.
		if _, err := parseServerMap(c.ServerMap, targets); err != nil {
			errs = append(errs, fmt.Errorf("COUCHWATCH_SERVER_MAP: %w", err))
		}
		if c.Policy.MinReady > len(targets) {
			errs = append(errs, fmt.Errorf("COUCHWATCH_MIN_READY must not exceed the %d servers of COUCHDB_SERVERS, got %d",
				len(targets), c.Policy.MinReady))
		}
	}
	if c.HAProxy.Socket != "" {
		if err := c.HAProxy.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, err := range []error{c.Policy.Validate(), c.Checks.Validate(), c.Kube.Validate(), c.CouchMetrics.Validate(), c.Shards.Validate(), c.Web.Validate()} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func checkListen(name, addr string, allowOff bool) error {
	if allowOff && (addr == "" || addr == "off") {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%s: %q is not host:port: %w", name, addr, err)
	}
	return nil
}

// serverName matches an HAProxy server name (HAProxy's identifier characters).
var serverName = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)

// parseServerMap parses "couchhost=haproxyserver,..." (spaces around entries and around
// '=' are trimmed, as in COUCHDB_SERVERS). Each host must be an entry of COUCHDB_SERVERS
// (targets), each server an HAProxy name, and no two hosts may share a server.
func parseServerMap(s string, targets []couch.Target) (map[string]string, error) {
	m := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return m, nil
	}
	known := map[string]bool{}
	for _, t := range targets {
		known[t.Name] = true
	}
	var errs []error
	hostOf := map[string]string{} // server -> host
	for i, kv := range strings.Split(s, ",") {
		num := i + 1
		k, v, ok := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case !ok || k == "" || v == "":
			errs = append(errs, fmt.Errorf("entry %d: %q is not host=server", num, strings.TrimSpace(kv)))
		case !known[k]:
			errs = append(errs, fmt.Errorf("entry %d: host %q is not in COUCHDB_SERVERS", num, k))
		case !serverName.MatchString(v):
			errs = append(errs, fmt.Errorf("entry %d: server %q is not an HAProxy server name (letters, digits, '_', '.', ':', '-')", num, v))
		case m[k] != "":
			errs = append(errs, fmt.Errorf("entry %d: host %q is mapped twice", num, k))
		case hostOf[v] != "":
			errs = append(errs, fmt.Errorf("entry %d: hosts %q and %q both map to server %q", num, hostOf[v], k, v))
		default:
			m[k] = v
			hostOf[v] = k
		}
	}
	return m, errors.Join(errs...)
}

// LogValue keeps secrets out of logs.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("couchdb_servers", c.Servers),
		slog.String("couchdb_user", c.User),
		slog.String("couchdb_password", redact(c.Password)),
		slog.String("listen", c.Listen),
		slog.String("agent_listen", c.AgentListen),
		slog.String("haproxy_socket", c.HAProxy.Socket),
		slog.String("haproxy_backend", c.HAProxy.Backend),
		slog.Bool("dry_run", c.DryRun),
		slog.String("on_node_loss", c.OnNodeLoss),
		// Durations as Go duration strings ("500ms"): slog's JSON handler prints a
		// time.Duration in nanoseconds.
		slog.String("probe_interval", c.Checks.Interval.String()),
		slog.String("probe_timeout", c.Checks.Timeout.String()),
		slog.String("system_interval", c.Checks.SystemInterval.String()),
		slog.String("reconcile_interval", c.Reconcile.String()),
		slog.String("slowstart", c.Policy.SlowStart.String()),
		slog.Int("rise", c.Checks.Rise),
		slog.Int("fall", c.Checks.Fall),
		slog.String("kube", c.Kube.Mode),
	)
}

func redact(s string) string {
	if s == "" {
		return ""
	}
	return "<redacted>"
}

// envVars lists every variable Config reads, from its tags: the list can never drift from
// what is read.
func envVars() []envconf.Var {
	vars, err := envconf.Vars(&Config{})
	if err != nil {
		// The tags are fixed at compile time and TestConfigTags loads them.
		panic(err)
	}
	return vars
}

func printHelp(w io.Writer) {
	fmt.Fprintf(w, "couchwatch %s: checks every CouchDB node and steers HAProxy (and Kubernetes) accordingly.\n\n", version)
	fmt.Fprintln(w, "Usage: couchwatch [-check-config] [-version] [-help] [-help-markdown]")
	fmt.Fprintln(w, "       couchwatch status | drain NODE | undrain NODE   (against the running couchwatch: see README)")
	fmt.Fprintln(w, "\nEnvironment variables:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, v := range envVars() {
		d := v.Default
		if d == "" {
			d = "(unset)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Name, d, v.Desc)
	}
	tw.Flush()
}

// configDoc renders every variable as Markdown: docs/config.md, written by
// `go generate ./cmd/couchwatch` (couchwatch -help-markdown) and checked by TestConfigDoc.
func configDoc() string {
	var b strings.Builder
	b.WriteString("# couchwatch configuration\n\n")
	b.WriteString("Every environment variable couchwatch reads, with its default. Generated from the code\n")
	b.WriteString("(`go generate ./cmd/couchwatch`; `couchwatch -help` prints the same); a test fails when it\n")
	b.WriteString("drifts. CHT's own names are reused where they exist; secrets also have `_FILE` variants\n")
	b.WriteString("(a regular file of at most 4 KiB; setting both is an error) and are never logged.\n\n")
	b.WriteString("| variable | default | meaning |\n|---|---|---|\n")
	for _, v := range envVars() {
		d := "`" + v.Default + "`"
		if v.Default == "" {
			d = "(unset)"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.Name, d, strings.ReplaceAll(v.Desc, "|", "\\|"))
	}
	return b.String()
}
