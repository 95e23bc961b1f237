package kube

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/leaderelection"

	"github.com/medic/couchwatch/internal/envconf"
)

// Modes of Config.Mode.
const (
	ModeAuto = "auto"
	ModeOn   = "on"
	ModeOff  = "off"
)

// serviceAccountNamespaceFile holds the pod's namespace inside a cluster.
const serviceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Config configures the Kubernetes integration. Field tags are for
// go-envconfig; defaults live in the tags.
type Config struct {
	// Mode is "auto" (on in a cluster or with KUBECONFIG, else off), "on" or "off".
	Mode string `env:"COUCHWATCH_KUBE, default=auto" desc:"Kubernetes flagging: auto (on in a cluster or with KUBECONFIG), on, off"`
	// Kubeconfig is a list of kubeconfig paths, as kubectl reads it.
	Kubeconfig string `env:"KUBECONFIG" desc:"kubeconfig path(s) when not running in a cluster"`
	// Namespace of the CouchDB Services, the Lease and the evictable pods.
	// Empty means the pod's own namespace, else "default".
	Namespace string `env:"COUCHWATCH_KUBE_NAMESPACE" desc:"namespace of the CouchDB Services, the Lease and evictable pods (default: the pod's own)"`
	// Prefix of every label, taint and annotation key couchwatch writes.
	Prefix string `env:"COUCHWATCH_KUBE_PREFIX, default=couchwatch.medic.org" desc:"prefix of every taint, label and condition couchwatch writes"`
	// FlagAfter is how long a CouchDB must stay Degraded before its node is flagged.
	FlagAfter time.Duration `env:"COUCHWATCH_KUBE_FLAG_AFTER, default=2m" desc:"time a CouchDB stays Degraded before its Kubernetes node is flagged"`
	// ClearBelow is the load score a flagged CouchDB must stay under to be cleared.
	ClearBelow float64 `env:"COUCHWATCH_KUBE_CLEAR_BELOW, default=0.5" desc:"load score a flagged CouchDB must stay under to be cleared"`
	// ClearAfter is the cool-down below ClearBelow before a flag is cleared.
	ClearAfter time.Duration `env:"COUCHWATCH_KUBE_CLEAR_AFTER, default=5m" desc:"cool-down below KUBE_CLEAR_BELOW before the flags are cleared"`
	// MaxFlagged caps flagged nodes; never all nodes hosting CouchDB in any case.
	MaxFlagged int `env:"COUCHWATCH_KUBE_MAX_FLAGGED, default=1" desc:"most Kubernetes nodes flagged at once (never every CouchDB host)"`
	// DryRun logs intended writes instead of making them (cmd sets it from
	// COUCHWATCH_DRY_RUN, which also covers HAProxy).
	DryRun bool
	// Rebalance enables evicting stateless pods from flagged nodes.
	Rebalance bool `env:"COUCHWATCH_KUBE_REBALANCE, default=false" desc:"evict stateless CHT pods from flagged nodes (Eviction API, PDBs hold)"`
	// EvictSelector selects the pods Rebalance may evict.
	EvictSelector string `env:"COUCHWATCH_KUBE_EVICT_SELECTOR, default=cht.service in (api, sentinel)" desc:"label selector of the pods rebalance may evict"`
	// EvictCooldown is the minimum time between two evictions.
	EvictCooldown time.Duration `env:"COUCHWATCH_KUBE_EVICT_COOLDOWN, default=10m" desc:"minimum time between two evictions"`
	// PodSelector finds CouchDB pods when EndpointSlices do not name them: a
	// pod matches a server when one of the selector's label values equals the
	// server's Service name (CHT: cht.service=couchdb-1).
	PodSelector string `env:"COUCHWATCH_KUBE_COUCHDB_SELECTOR, default=cht.service" desc:"label key whose value names a CouchDB pod's Service (fallback when EndpointSlices do not say)"`
	// LeaseName is the coordination.k8s.io Lease used for leader election.
	LeaseName string `env:"COUCHWATCH_KUBE_LEASE, default=couchwatch" desc:"Lease used for leader election (only the leader writes to Kubernetes)"`
	// Instance names this CHT instance on the flags it owns: clusters shared by
	// several instances (one namespace each) keep one owner label per instance
	// on a flagged node. Empty means the namespace.
	Instance string `env:"COUCHWATCH_KUBE_INSTANCE" desc:"names this CHT instance on the flags it owns (label PREFIX/flagged-by.INSTANCE); instances sharing a cluster keep a host flagged while any of them needs it (default: the namespace; a DNS label of at most 52 characters)"`
	// Identity of this replica in the Lease. Empty means the host name.
	Identity string `env:"COUCHWATCH_KUBE_IDENTITY, default=$POD_NAME" desc:"this replica's identity in the Lease (default: POD_NAME, else host name)"`

	LeaseDuration time.Duration `env:"COUCHWATCH_KUBE_LEASE_DURATION, default=15s" desc:"leader election lease duration"`
	RenewDeadline time.Duration `env:"COUCHWATCH_KUBE_RENEW_DEADLINE, default=10s" desc:"leader election renew deadline"`
	RetryPeriod   time.Duration `env:"COUCHWATCH_KUBE_RETRY_PERIOD, default=2s" desc:"leader election retry period"`
}

// DefaultConfig returns the defaults of the env tags, for callers that do not
// read an environment (tests, mostly).
func DefaultConfig() Config { return envconf.Defaults[Config]() }

// Validate reports every problem at once, each naming its variable.
func (c Config) Validate() error {
	var errs []error
	bad := func(env, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", env, fmt.Sprintf(format, args...)))
	}
	switch c.Mode {
	case ModeAuto, ModeOn, ModeOff:
	default:
		bad("COUCHWATCH_KUBE", "must be auto, on or off, got %q", c.Mode)
	}
	if c.Namespace != "" {
		if msgs := validation.IsDNS1123Label(c.Namespace); len(msgs) > 0 {
			bad("COUCHWATCH_KUBE_NAMESPACE", "invalid namespace %q: %s", c.Namespace, strings.Join(msgs, "; "))
		}
	}
	if c.Instance != "" {
		if err := validInstance(c.Instance); err != nil {
			bad("COUCHWATCH_KUBE_INSTANCE", "%v", err)
		}
	}
	if msgs := validation.IsDNS1123Subdomain(c.Prefix); len(msgs) > 0 {
		bad("COUCHWATCH_KUBE_PREFIX", "must be a DNS subdomain, got %q: %s", c.Prefix, strings.Join(msgs, "; "))
	} else if msgs := validation.IsQualifiedName(c.Prefix + "/" + conditionLabelSuffix); len(msgs) > 0 {
		bad("COUCHWATCH_KUBE_PREFIX", "keys under %q are invalid: %s", c.Prefix, strings.Join(msgs, "; "))
	}
	if c.FlagAfter <= 0 {
		bad("COUCHWATCH_KUBE_FLAG_AFTER", "must be positive, got %s", c.FlagAfter)
	}
	if c.ClearBelow < 0 || c.ClearBelow > 1 {
		bad("COUCHWATCH_KUBE_CLEAR_BELOW", "must be within [0, 1], got %v", c.ClearBelow)
	}
	if c.ClearAfter <= 0 {
		bad("COUCHWATCH_KUBE_CLEAR_AFTER", "must be positive, got %s", c.ClearAfter)
	}
	if c.MaxFlagged < 0 {
		bad("COUCHWATCH_KUBE_MAX_FLAGGED", "must not be negative, got %d", c.MaxFlagged)
	}
	if sel, err := labels.Parse(c.EvictSelector); err != nil {
		bad("COUCHWATCH_KUBE_EVICT_SELECTOR", "invalid label selector %q: %v", c.EvictSelector, err)
	} else if c.Rebalance && sel.Empty() {
		bad("COUCHWATCH_KUBE_EVICT_SELECTOR", "must select something when COUCHWATCH_KUBE_REBALANCE is on")
	}
	if c.EvictCooldown <= 0 {
		bad("COUCHWATCH_KUBE_EVICT_COOLDOWN", "must be positive, got %s", c.EvictCooldown)
	}
	if sel, err := labels.Parse(c.PodSelector); err != nil {
		bad("COUCHWATCH_KUBE_COUCHDB_SELECTOR", "invalid label selector %q: %v", c.PodSelector, err)
	} else if sel.Empty() {
		bad("COUCHWATCH_KUBE_COUCHDB_SELECTOR", "must not be empty")
	}
	if msgs := validation.IsDNS1123Subdomain(c.LeaseName); len(msgs) > 0 {
		bad("COUCHWATCH_KUBE_LEASE", "invalid Lease name %q: %s", c.LeaseName, strings.Join(msgs, "; "))
	}
	if c.RetryPeriod <= 0 {
		bad("COUCHWATCH_KUBE_RETRY_PERIOD", "must be positive, got %s", c.RetryPeriod)
	}
	if c.RenewDeadline <= time.Duration(leaderelection.JitterFactor*float64(c.RetryPeriod)) {
		bad("COUCHWATCH_KUBE_RENEW_DEADLINE", "must exceed %v x COUCHWATCH_KUBE_RETRY_PERIOD (%s), got %s",
			leaderelection.JitterFactor, c.RetryPeriod, c.RenewDeadline)
	}
	if c.LeaseDuration <= c.RenewDeadline {
		bad("COUCHWATCH_KUBE_LEASE_DURATION", "must exceed COUCHWATCH_KUBE_RENEW_DEADLINE (%s), got %s",
			c.RenewDeadline, c.LeaseDuration)
	}
	return errors.Join(errs...)
}

// namespace returns the configured namespace, else the pod's own, else "default".
func (c Config) namespace() string {
	if c.Namespace != "" {
		return c.Namespace
	}
	if b, err := os.ReadFile(serviceAccountNamespaceFile); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return "default"
}

// maxInstance keeps the owner label's name part ("flagged-by.<instance>")
// within Kubernetes' 63 characters.
const maxInstance = validation.DNS1123LabelMaxLength - len(ownerInfix)

// validInstance checks an instance name: a DNS label short enough for the owner label.
func validInstance(s string) error {
	if msgs := validation.IsDNS1123Label(s); len(msgs) > 0 {
		return fmt.Errorf("invalid instance %q: %s", s, strings.Join(msgs, "; "))
	}
	if len(s) > maxInstance {
		return fmt.Errorf("instance %q is longer than %d characters", s, maxInstance)
	}
	return nil
}

// instance returns the configured instance, else the namespace.
func (c Config) instance() (string, error) {
	if c.Instance != "" {
		return c.Instance, nil
	}
	ns := c.namespace()
	if err := validInstance(ns); err != nil {
		return "", fmt.Errorf("COUCHWATCH_KUBE_INSTANCE unset and the namespace does not fit: %w", err)
	}
	return ns, nil
}

// identity returns the configured identity, else the host name.
func (c Config) identity() (string, error) {
	if c.Identity != "" {
		return c.Identity, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("COUCHWATCH_KUBE_IDENTITY unset and no host name: %w", err)
	}
	return h, nil
}

// Keys under the prefix.
const (
	taintSuffix          = "couchdb-saturated"
	conditionLabelSuffix = "couchdb-load"
	// ownerInfix starts the name of each owner label: <prefix>/flagged-by.<instance>.
	ownerInfix = "flagged-by."
	// ConditionType is the node condition couchwatch owns.
	ConditionType = "CouchDBSaturated"
	// LoadHigh is the value of the load label on a flagged node.
	LoadHigh = "high"
)

// TaintKey is the taint couchwatch puts on a flagged node.
func (c Config) TaintKey() string { return c.Prefix + "/" + taintSuffix }

// LabelKey is the label couchwatch puts on a flagged node.
func (c Config) LabelKey() string { return c.Prefix + "/" + conditionLabelSuffix }

// OwnerKey is the label by which instance says it needs the flag on a node;
// its value names the saturated CouchDB (as the taint value does).
func (c Config) OwnerKey(instance string) string { return c.Prefix + "/" + ownerInfix + instance }

// ownerPrefix starts every owner label key.
func (c Config) ownerPrefix() string { return c.Prefix + "/" + ownerInfix }
