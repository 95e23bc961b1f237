package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/couch"
	"github.com/medic/couchwatch/haproxy"
	"github.com/medic/couchwatch/kube"
)

// Config is everything couchwatch reads from its environment. CHT's own variable names
// are reused where they exist; ours start with COUCHWATCH_.
type Config struct {
	Servers      string `env:"COUCHDB_SERVERS"`
	User         string `env:"COUCHDB_USER"`
	UserFile     string `env:"COUCHDB_USER_FILE"`
	Password     string `env:"COUCHDB_PASSWORD"`
	PasswordFile string `env:"COUCHDB_PASSWORD_FILE"`

	Listen      string `env:"COUCHWATCH_LISTEN, default=:9155"`
	AgentListen string `env:"COUCHWATCH_AGENT_LISTEN, default=:5555"`
	LogLevel    string `env:"COUCHWATCH_LOG_LEVEL, default=info"`
	LogFormat   string `env:"COUCHWATCH_LOG_FORMAT, default=json"`
	DryRun      bool   `env:"COUCHWATCH_DRY_RUN, default=false"`

	HAProxySocket  string        `env:"COUCHWATCH_HAPROXY_SOCKET"`
	HAProxyBackend string        `env:"COUCHWATCH_HAPROXY_BACKEND, default=couchdb-servers"`
	HAProxyTimeout time.Duration `env:"COUCHWATCH_HAPROXY_TIMEOUT, default=2s"`
	Reconcile      time.Duration `env:"COUCHWATCH_RECONCILE_INTERVAL, default=1s"`
	ServerMap      string        `env:"COUCHWATCH_SERVER_MAP"`
	OnNodeLoss     string        `env:"COUCHWATCH_ON_NODE_LOSS, default=serve"`

	Policy PolicyConfig
	Checks checks.Config
	Kube   kube.Config
}

// varHelp is the meaning of every variable, for -help. A test checks that every variable
// of Config has one.
var varHelp = map[string]string{
	"COUCHDB_SERVERS":       "CouchDB nodes: comma list of host, host:port or http(s)://host:port (CHT's variable; required)",
	"COUCHDB_USER":          "CouchDB admin user (CHT's variable)",
	"COUCHDB_USER_FILE":     "file holding the CouchDB user (instead of COUCHDB_USER)",
	"COUCHDB_PASSWORD":      "CouchDB admin password (CHT's variable; never logged)",
	"COUCHDB_PASSWORD_FILE": "file holding the CouchDB password (instead of COUCHDB_PASSWORD)",

	"COUCHWATCH_LISTEN":             "HTTP address for /metrics, /healthz, /readyz and the status page",
	"COUCHWATCH_AGENT_LISTEN":       "TCP address of the HAProxy agent-check server (drop-in for cht-haproxy-healthcheck); off disables it",
	"COUCHWATCH_LOG_LEVEL":          "debug, info, warn or error",
	"COUCHWATCH_LOG_FORMAT":         "json or text",
	"COUCHWATCH_DRY_RUN":            "log what would be done to HAProxy and Kubernetes, change nothing",
	"COUCHWATCH_HAPROXY_SOCKET":     "HAProxy admin socket (stats socket ... level admin); unset = no runtime steering (agent mode only)",
	"COUCHWATCH_HAPROXY_BACKEND":    "HAProxy backend holding the CouchDB servers",
	"COUCHWATCH_HAPROXY_TIMEOUT":    "deadline of one exchange with HAProxy's runtime API",
	"COUCHWATCH_RECONCILE_INTERVAL": "how often HAProxy's state is re-read and repaired (also at once on every verdict change)",
	"COUCHWATCH_SERVER_MAP":         "explicit CouchDB host to HAProxy server names, host=server,...; default: same name, else same address:port",
	"COUCHWATCH_ON_NODE_LOSS":       "serve: healthy coordinators keep serving when a node is lost; fail: the cluster-wide agent answer goes down (CHT's old all-or-nothing, with hysteresis)",

	"COUCHWATCH_WEIGHTS":         "steer load with HAProxy weights from the load score",
	"COUCHWATCH_WEIGHT_MAX":      "weight of an idle node (absolute, 1-256)",
	"COUCHWATCH_WEIGHT_MIN":      "weight of a saturated node that is not drained (absolute, 1-256)",
	"COUCHWATCH_WEIGHT_STEP":     "largest weight change per reconcile pass",
	"COUCHWATCH_SLOWSTART":       "ramp a returning node's weight from WEIGHT_MIN to its target over this time",
	"COUCHWATCH_MAX_LOAD_DRAINS": "most nodes drained at once because they are saturated (Degraded); 0 disables load drains",
	"COUCHWATCH_MIN_READY":       "servers that always stay ready, whatever couchwatch sees (at least 1)",

	"COUCHWATCH_PROBE_INTERVAL":      "interval between /_up probes of a node",
	"COUCHWATCH_PROBE_TIMEOUT":       "deadline of one /_up probe (a hung node is detected within it)",
	"COUCHWATCH_PROBE_FAST_INTERVAL": "interval between probes while a node changes state (like HAProxy's fastinter)",
	"COUCHWATCH_RISE":                "consecutive good probes before a node is up",
	"COUCHWATCH_FALL":                "consecutive failed probes before a node is down",
	"COUCHWATCH_HOLD_CONNECTION":     "watch the /_up probe's kept-alive connection between probes and re-probe at once when the node closes it (notices a crash in milliseconds)",
	"COUCHWATCH_SYSTEM_INTERVAL":     "interval between saturation samples (_system and _active_tasks)",
	"COUCHWATCH_SYSTEM_TIMEOUT":      "deadline of saturation and membership calls",
	"COUCHWATCH_MEMBERSHIP_INTERVAL": "interval between /_membership comparisons",

	"COUCHWATCH_KUBE":                  "Kubernetes flagging: auto (on in a cluster or with KUBECONFIG), on, off",
	"KUBECONFIG":                       "kubeconfig path(s) when not running in a cluster",
	"COUCHWATCH_KUBE_NAMESPACE":        "namespace of the CouchDB Services, the Lease and evictable pods (default: the pod's own)",
	"COUCHWATCH_KUBE_PREFIX":           "prefix of every taint, label and condition couchwatch writes",
	"COUCHWATCH_KUBE_FLAG_AFTER":       "time a CouchDB stays Degraded before its Kubernetes node is flagged",
	"COUCHWATCH_KUBE_CLEAR_BELOW":      "load score a flagged CouchDB must stay under to be cleared",
	"COUCHWATCH_KUBE_CLEAR_AFTER":      "cool-down below KUBE_CLEAR_BELOW before the flags are cleared",
	"COUCHWATCH_KUBE_MAX_FLAGGED":      "most Kubernetes nodes flagged at once (never every CouchDB host)",
	"COUCHWATCH_KUBE_REBALANCE":        "evict stateless CHT pods from flagged nodes (Eviction API, PDBs hold)",
	"COUCHWATCH_KUBE_EVICT_SELECTOR":   "label selector of the pods rebalance may evict",
	"COUCHWATCH_KUBE_EVICT_COOLDOWN":   "minimum time between two evictions",
	"COUCHWATCH_KUBE_COUCHDB_SELECTOR": "label key whose value names a CouchDB pod's Service (fallback when EndpointSlices do not say)",
	"COUCHWATCH_KUBE_LEASE":            "Lease used for leader election (only the leader writes to Kubernetes)",
	"COUCHWATCH_KUBE_IDENTITY":         "this replica's identity in the Lease (default: POD_NAME, else host name)",
	"COUCHWATCH_KUBE_LEASE_DURATION":   "leader election lease duration",
	"COUCHWATCH_KUBE_RENEW_DEADLINE":   "leader election renew deadline",
	"COUCHWATCH_KUBE_RETRY_PERIOD":     "leader election retry period",

	"COUCHWATCH_LOAD_HIGH":                "load score at or above which a node is saturated",
	"COUCHWATCH_LOAD_LOW":                 "load score below which a saturated node has cooled",
	"COUCHWATCH_LOAD_SUSTAIN":             "time above LOAD_HIGH before a node is Degraded",
	"COUCHWATCH_LOAD_COOLDOWN":            "time below LOAD_LOW before a Degraded node is Up again",
	"COUCHWATCH_LOAD_SMOOTHING":           "weight of the newest sample in the smoothed load score (0-1]",
	"COUCHWATCH_LOAD_RUN_QUEUE":           "run_queue at which the run-queue signal saturates",
	"COUCHWATCH_LOAD_RUN_QUEUE_DIRTY_CPU": "run_queue_dirty_cpu at which that signal saturates",
	"COUCHWATCH_LOAD_MESSAGE_QUEUE":       "couch_server/rexi_server/rexi_buffer message queue at which they saturate",
	"COUCHWATCH_LOAD_COUCH_FILE_P99":      "couch_file message queue p99 at which it saturates",
	"COUCHWATCH_JS_PROCESS_LIMIT":         "CouchDB's JavaScript process limit (query_server_config os_process_limit)",
	"COUCHWATCH_LOAD_ACTIVE_TASKS":        "active indexers + compactions at which that signal saturates",
	"COUCHWATCH_LOAD_LATENCY":             "/_up latency EWMA at which the latency signal saturates",
	"COUCHWATCH_LATENCY_SMOOTHING":        "weight of the newest /_up latency in its EWMA (0-1]",
}

// loadConfig reads the environment through l.
func loadConfig(ctx context.Context, l envconfig.Lookuper) (Config, error) {
	var c Config
	if err := checkTypes(l); err != nil {
		return c, err
	}
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &c, Lookuper: l}); err != nil {
		return c, fmt.Errorf("read environment: %w", err)
	}
	var errs []error
	if c.UserFile != "" {
		v, err := readSecretFile("COUCHDB_USER_FILE", c.UserFile)
		errs = append(errs, err)
		c.User = v
	}
	if c.PasswordFile != "" {
		v, err := readSecretFile("COUCHDB_PASSWORD_FILE", c.PasswordFile)
		errs = append(errs, err)
		c.Password = v
	}
	c.Kube.DryRun = c.DryRun
	return c, errors.Join(errs...)
}

// checkTypes parses every variable that is set by its field's type, so that every
// malformed value is reported at once and by its name (go-envconfig stops at the first
// and names the Go field).
func checkTypes(l envconfig.Lookuper) error {
	var errs []error
	for _, v := range envVars() {
		raw, ok := l.Lookup(v.Name)
		if !ok {
			continue
		}
		var err error
		switch v.Kind {
		case "duration":
			_, err = time.ParseDuration(raw)
		case "int":
			_, err = strconv.Atoi(raw)
		case "float":
			_, err = strconv.ParseFloat(raw, 64)
		case "bool":
			_, err = strconv.ParseBool(raw)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not a valid %s", v.Name, raw, v.Kind))
		}
	}
	return errors.Join(errs...)
}

func readSecretFile(name, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		// The path is not secret; the content is.
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// Validate returns every problem at once, each naming its variable.
func (c Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.Servers) == "" {
		errs = append(errs, errors.New("COUCHDB_SERVERS is required (comma list of CouchDB hosts)"))
	} else if _, err := couch.ParseServers(c.Servers); err != nil {
		errs = append(errs, fmt.Errorf("COUCHDB_SERVERS: %w", err))
	}
	if c.User != "" && c.Password == "" {
		errs = append(errs, errors.New("COUCHDB_PASSWORD (or COUCHDB_PASSWORD_FILE) is required when COUCHDB_USER is set"))
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
	if c.Reconcile <= 0 {
		errs = append(errs, fmt.Errorf("COUCHWATCH_RECONCILE_INTERVAL must be > 0, got %s", c.Reconcile))
	}
	if _, err := parseServerMap(c.ServerMap); err != nil {
		errs = append(errs, fmt.Errorf("COUCHWATCH_SERVER_MAP: %w", err))
	}
	if c.HAProxySocket != "" {
		if err := c.haproxyConfig().Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, err := range []error{c.Policy.Validate(), c.Checks.Validate(), c.Kube.Validate()} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c Config) haproxyConfig() haproxy.Config {
	return haproxy.Config{Socket: c.HAProxySocket, Backend: c.HAProxyBackend, DryRun: c.DryRun, Timeout: c.HAProxyTimeout}
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

// parseServerMap parses "couchhost=haproxyserver,...".
func parseServerMap(s string) (map[string]string, error) {
	m := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return m, nil
	}
	var errs []error
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case !ok || k == "" || v == "":
			errs = append(errs, fmt.Errorf("entry %q is not host=server", kv))
		case m[k] != "":
			errs = append(errs, fmt.Errorf("host %q mapped twice", k))
		default:
			m[k] = v
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
		slog.String("haproxy_socket", c.HAProxySocket),
		slog.String("haproxy_backend", c.HAProxyBackend),
		slog.Bool("dry_run", c.DryRun),
		slog.String("on_node_loss", c.OnNodeLoss),
		slog.Duration("probe_interval", c.Checks.Interval),
		slog.Duration("probe_timeout", c.Checks.Timeout),
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

// envVar is one variable of Config, for -help.
type envVar struct {
	Name, Default, Help string
	Kind                string // duration, int, float, bool or string
}

// envVars walks Config's struct tags: the list can never drift from what is read.
func envVars() []envVar {
	var out []envVar
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("env")
			if tag == "" {
				if f.Type.Kind() == reflect.Struct {
					walk(f.Type)
				}
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			v := envVar{Name: strings.TrimSpace(name)}
			// Like go-envconfig, default= takes the rest of the tag, commas included.
			if i := strings.Index(opts, "default="); i >= 0 {
				v.Default = opts[i+len("default="):]
			}
			v.Help = varHelp[v.Name]
			switch {
			case f.Type == reflect.TypeOf(time.Duration(0)):
				v.Kind = "duration"
			case f.Type.Kind() == reflect.Int:
				v.Kind = "int"
			case f.Type.Kind() == reflect.Float64:
				v.Kind = "float"
			case f.Type.Kind() == reflect.Bool:
				v.Kind = "bool"
			default:
				v.Kind = "string"
			}
			out = append(out, v)
		}
	}
	walk(reflect.TypeOf(Config{}))
	seen := map[string]bool{}
	dedup := out[:0]
	for _, v := range out {
		if !seen[v.Name] { // COUCHWATCH_DRY_RUN is read by two packages
			seen[v.Name] = true
			dedup = append(dedup, v)
		}
	}
	return dedup
}

func printHelp(w io.Writer) {
	fmt.Fprintf(w, "couchwatch %s: checks every CouchDB node and steers HAProxy (and Kubernetes) accordingly.\n\n", version)
	fmt.Fprintln(w, "Usage: couchwatch [-check-config] [-version] [-help]")
	fmt.Fprintln(w, "\nEnvironment variables:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, v := range envVars() {
		d := v.Default
		if d == "" {
			d = "(unset)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Name, d, v.Help)
	}
	tw.Flush()
}

// configDoc renders every variable as a Markdown table (docs/config.md).
func configDoc() string {
	var b strings.Builder
	b.WriteString("# couchwatch configuration\n\n")
	b.WriteString("Every environment variable couchwatch reads, with its default. Generated from the code\n")
	b.WriteString("(`couchwatch -help` prints the same); a test fails when it drifts. CHT's own names are reused\n")
	b.WriteString("where they exist; secrets also have `_FILE` variants and are never logged.\n\n")
	b.WriteString("| variable | default | meaning |\n|---|---|---|\n")
	for _, v := range envVars() {
		d := "`" + v.Default + "`"
		if v.Default == "" {
			d = "(unset)"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.Name, d, strings.ReplaceAll(v.Help, "|", "\\|"))
	}
	return b.String()
}
