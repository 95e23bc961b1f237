package kube

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"mode", func(c *Config) { c.Mode = "maybe" }, `COUCHWATCH_KUBE: must be auto, on or off, got "maybe"`},
		{"namespace", func(c *Config) { c.Namespace = "Bad_NS" }, "COUCHWATCH_KUBE_NAMESPACE: invalid namespace"},
		{"instance", func(c *Config) { c.Instance = "Prod_1" }, `COUCHWATCH_KUBE_INSTANCE: invalid instance "Prod_1"`},
		{"long instance", func(c *Config) { c.Instance = strings.Repeat("a", 53) }, "COUCHWATCH_KUBE_INSTANCE: instance \"" + strings.Repeat("a", 53) + "\" is longer than 52 characters"},
		{"prefix", func(c *Config) { c.Prefix = "not a domain" }, "COUCHWATCH_KUBE_PREFIX: must be a DNS subdomain"},
		{"flag after", func(c *Config) { c.FlagAfter = 0 }, "COUCHWATCH_KUBE_FLAG_AFTER: must be positive"},
		{"clear below", func(c *Config) { c.ClearBelow = 1.5 }, "COUCHWATCH_KUBE_CLEAR_BELOW: must be within [0, 1]"},
		{"clear after", func(c *Config) { c.ClearAfter = -time.Second }, "COUCHWATCH_KUBE_CLEAR_AFTER: must be positive"},
		{"max flagged", func(c *Config) { c.MaxFlagged = -1 }, "COUCHWATCH_KUBE_MAX_FLAGGED: must not be negative"},
		{"evict selector", func(c *Config) { c.EvictSelector = "a in (" }, "COUCHWATCH_KUBE_EVICT_SELECTOR: invalid label selector"},
		{"evict everything", func(c *Config) { c.Rebalance, c.EvictSelector = true, "" }, "COUCHWATCH_KUBE_EVICT_SELECTOR: must select something"},
		{"evict cooldown", func(c *Config) { c.EvictCooldown = 0 }, "COUCHWATCH_KUBE_EVICT_COOLDOWN: must be positive"},
		{"pod selector", func(c *Config) { c.PodSelector = "" }, "COUCHWATCH_KUBE_COUCHDB_SELECTOR: must not be empty"},
		{"lease", func(c *Config) { c.LeaseName = "UPPER" }, "COUCHWATCH_KUBE_LEASE: invalid Lease name"},
		{"retry", func(c *Config) { c.RetryPeriod = 9 * time.Second }, "COUCHWATCH_KUBE_RENEW_DEADLINE: must exceed 1.2 x COUCHWATCH_KUBE_RETRY_PERIOD"},
		{"lease duration", func(c *Config) { c.LeaseDuration = 10 * time.Second }, "COUCHWATCH_KUBE_LEASE_DURATION: must exceed COUCHWATCH_KUBE_RENEW_DEADLINE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
			if n := len(strings.Split(err.Error(), "\n")); n != 1 {
				t.Fatalf("%d problems reported, want 1: %v", n, err)
			}
		})
	}
	t.Run("all at once", func(t *testing.T) {
		c := DefaultConfig()
		c.Mode, c.FlagAfter, c.MaxFlagged = "x", 0, -2
		if n := len(strings.Split(c.Validate().Error(), "\n")); n != 3 {
			t.Fatalf("%d problems reported, want 3", n)
		}
	})
}

func TestNewClientOff(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		on      bool
		wantErr bool
	}{
		{name: "off", cfg: Config{Mode: ModeOff, Kubeconfig: "/nonexistent"}},
		{name: "auto outside a cluster", cfg: Config{Mode: ModeAuto}},
		{name: "on outside a cluster", cfg: Config{Mode: ModeOn}, wantErr: true},
		{name: "auto with a broken KUBECONFIG", cfg: Config{Mode: ModeAuto, Kubeconfig: "/nonexistent/kubeconfig"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KUBERNETES_SERVICE_HOST", "")
			t.Setenv("KUBERNETES_SERVICE_PORT", "")
			cs, on, err := NewClient(tc.cfg)
			if (err != nil) != tc.wantErr || on != tc.on || (cs != nil) != tc.on {
				t.Fatalf("NewClient = (%v, %v, %v), want on=%v err=%v", cs, on, err, tc.on, tc.wantErr)
			}
		})
	}
}
