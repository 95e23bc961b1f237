package haproxy

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings, one per expected problem; nil = valid
	}{
		{name: "minimal", cfg: Config{Socket: "/run/haproxy/admin.sock"}},
		{name: "unix prefix", cfg: Config{Socket: "unix@/run/haproxy/admin.sock", Backend: "b", Timeout: time.Second}},
		{name: "missing socket", cfg: Config{}, want: []string{"COUCHWATCH_HAPROXY_SOCKET: required"}},
		{name: "ipv4", cfg: Config{Socket: "ipv4@127.0.0.1:9999"}, want: []string{"COUCHWATCH_HAPROXY_SOCKET", "only a unix socket"}},
		{name: "tcp", cfg: Config{Socket: "tcp://127.0.0.1:9999"}, want: []string{"only a unix socket"}},
		{name: "host port", cfg: Config{Socket: "127.0.0.1:9999"}, want: []string{"host:port"}},
		{name: "bad backend", cfg: Config{Socket: "/s", Backend: "a b"}, want: []string{"COUCHWATCH_HAPROXY_BACKEND"}},
		{name: "negative timeout", cfg: Config{Socket: "/s", Timeout: -time.Second}, want: []string{"COUCHWATCH_HAPROXY_TIMEOUT"}},
		{
			name: "every problem at once",
			cfg:  Config{Backend: "x/y", Timeout: time.Hour},
			want: []string{"COUCHWATCH_HAPROXY_SOCKET", "COUCHWATCH_HAPROXY_BACKEND", "COUCHWATCH_HAPROXY_TIMEOUT"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestNewRuntimeDefaults(t *testing.T) {
	rt, err := NewRuntime(Config{Socket: "unix@/tmp/x.sock"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := rt.Config(); c.Backend != "couchdb-servers" || c.Timeout != 2*time.Second || rt.path != "/tmp/x.sock" {
		t.Fatalf("config = %+v path %q", c, rt.path)
	}
	if _, err := NewRuntime(Config{Socket: "ipv4@127.0.0.1:1"}, nil); err == nil {
		t.Fatal("NewRuntime accepted a TCP address")
	}
}
